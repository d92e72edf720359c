"""The codec's container: one self-checking file that a decoder can trust or refuse in one line.

Layout (little endian):

    magic     8 bytes  b"MPMINRC\\0"
    version   u16      FORMAT_VERSION of the writer; a reader refuses any newer one
    meta_len  u32      bytes of the metadata blob (lzma-compressed compact JSON)
    data_len  u64      bytes of the payload (the named blobs, back to back, offsets in the metadata)
    meta      meta_len bytes
    payload   data_len bytes
    sha256    32 bytes over everything before it

A truncated, extended or bit-flipped file fails the length or checksum test before any number is decoded, so a
damaged file can never turn into plausible wrong arrays.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpm_inr.errors import UserError

MAGIC = b"MPMINRC\x00"
FORMAT_VERSION = 2  # 2: a bilinear file may hold its basis as a Chebyshev series (encoding.basis_kind)
_HEAD = struct.Struct("<8sHIQ")
_DIGEST = 32
# Raw LZMA2 streams: no .xz container (about 60 bytes each), the filter chain is fixed by the format version. A
# 1 MiB dictionary (blobs are mostly smaller) makes each call 5x cheaper than preset 9's 64 MiB; no literal context
# bits (lc=lp=pb=0), as quantised coefficients are nearly independent bytes (1 % smaller on them).
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 20, "lc": 0,
                 "lp": 0, "pb": 0}]


class CodecError(UserError):
    """A codec file cannot be written or trusted; the message names the file and the fix."""


@dataclass(frozen=True)
class Container:
    """A parsed file: its version, metadata and named blobs (still compressed as their metadata says)."""

    version: int
    meta: dict[str, Any]
    blobs: dict[str, bytes]
    n_bytes: int
    meta_bytes: int


def compress(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


def decompress(data: bytes) -> bytes:
    return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


def pack(meta: dict[str, Any], blobs: dict[str, bytes]) -> bytes:
    """The file's bytes: `meta` gains a `blobs` table {name: [offset, size]} into the payload."""
    table, offset = {}, 0
    for name, blob in blobs.items():
        table[name] = [offset, len(blob)]
        offset += len(blob)
    meta_blob = compress(json.dumps({**meta, "blobs": table}, separators=(",", ":"), sort_keys=True).encode())
    body = _HEAD.pack(MAGIC, FORMAT_VERSION, len(meta_blob), offset) + meta_blob + b"".join(blobs.values())
    return body + hashlib.sha256(body).digest()


def write(path: str | os.PathLike, meta: dict[str, Any], blobs: dict[str, bytes]) -> int:
    """Write atomically (a reader never sees half a file); returns the bytes on disk."""
    path = Path(path)
    data = pack(meta, blobs)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        raise CodecError(f"cannot write {path}: {err.strerror}; pick a writable output path") from None
    return path.stat().st_size


def read(path: str | os.PathLike) -> Container:
    """Parse and verify a file; any defect is one CodecError line naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CodecError(f"{path} does not exist") from None
    except OSError as err:
        raise CodecError(f"cannot read {path}: {err.strerror}") from None
    return parse(data, str(path))


def parse(data: bytes, name: str = "<bytes>") -> Container:
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise CodecError(f"{name} is not an mpm-inr codec file (no {MAGIC[:7].decode()} magic); "
                         f"encode a run with `python -m mpm_inr.codec encode RUN_DIR`")
    if len(data) < _HEAD.size:
        raise CodecError(f"{name} is truncated ({len(data)} bytes, shorter than the header); encode it again")
    _, version, meta_len, data_len = _HEAD.unpack_from(data)
    if version > FORMAT_VERSION:
        raise CodecError(f"{name} has format version {version}, newer than this reader's {FORMAT_VERSION}; "
                         f"update mpm-inr to decode it")
    expected = _HEAD.size + meta_len + data_len + _DIGEST
    if len(data) < expected:
        raise CodecError(f"{name} is truncated ({len(data)} of {expected} bytes); copy or encode it again")
    if len(data) > expected:
        raise CodecError(f"{name} has {len(data) - expected} unexpected trailing bytes; copy or encode it again")
    if hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise CodecError(f"{name} fails its sha256 checksum (the file is corrupted); copy or encode it again")
    meta = json.loads(decompress(data[_HEAD.size:_HEAD.size + meta_len]))
    start = _HEAD.size + meta_len
    blobs = {key: data[start + off:start + off + size] for key, (off, size) in meta.pop("blobs").items()}
    return Container(version, meta, blobs, len(data), meta_len)
