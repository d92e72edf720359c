"""The codec's container: one self-checking file that a decoder can trust or refuse in one line.

Layout (little endian):

    magic     8 bytes  b"MPMINRC\\0"
    version   u16      FORMAT_VERSION of the writer; a reader refuses any newer one
    meta_len  u32      bytes of the metadata blob: compact JSON, deflated against META_DICTIONARY (version 3;
                       versions 1-2: raw LZMA2)
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
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpm_inr.codec.meta_dictionary import META_DICTIONARY
from mpm_inr.errors import UserError

MAGIC = b"MPMINRC\x00"
# 2: a bilinear file may hold its basis as a Chebyshev series (encoding.basis_kind); 3: the metadata is deflated
# against META_DICTIONARY (~0.45 KB less per file)
FORMAT_VERSION = 3
_DICTIONARY_SINCE = 3
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


def pack_meta(text: bytes, version: int) -> bytes:
    """From version 3, raw deflate (no zlib header) against the preset dictionary: the keys and structure every
    file shares cost a back-reference instead of their text."""
    if version < _DICTIONARY_SINCE:
        return compress(text)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=META_DICTIONARY)
    return packer.compress(text) + packer.flush()


def unpack_meta(blob: bytes, version: int) -> bytes:
    if version < _DICTIONARY_SINCE:
        return decompress(blob)
    unpacker = zlib.decompressobj(-15, zdict=META_DICTIONARY)
    return unpacker.decompress(blob) + unpacker.flush()


def pack(meta: dict[str, Any], blobs: dict[str, bytes]) -> bytes:
    """The file's bytes: `meta` gains a `blobs` table {name: [offset, size]} into the payload."""
    table, offset = {}, 0
    for name, blob in blobs.items():
        table[name] = [offset, len(blob)]
        offset += len(blob)
    version = FORMAT_VERSION
    meta_blob = pack_meta(json.dumps({**meta, "blobs": table}, separators=(",", ":"), sort_keys=True).encode(),
                          version)
    body = _HEAD.pack(MAGIC, version, len(meta_blob), offset) + meta_blob + b"".join(blobs.values())
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
    try:
        meta = json.loads(unpack_meta(data[_HEAD.size:_HEAD.size + meta_len], version))
    except (zlib.error, lzma.LZMAError, ValueError):  # checksum-consistent but not ours: a forged or foreign file
        raise CodecError(f"{name} has metadata this reader cannot parse (format version {version}); encode it "
                         f"again") from None
    start = _HEAD.size + meta_len
    blobs = {key: data[start + off:start + off + size] for key, (off, size) in meta.pop("blobs").items()}
    return Container(version, meta, blobs, len(data), meta_len)
