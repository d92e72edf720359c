"""The codec's container: one self-checking file that a decoder can trust or refuse in one line.

Layout of versions 5 to 13 (little endian; 6 to 13 differ in the metadata only):

    magic     8 bytes  b"MPMINRC\\0"
    version   u16      FORMAT_VERSION of the writer; a reader refuses any newer one
    meta_len  varint   bytes of the metadata blob: compact JSON deflated against the version's preset dictionary
    data_len  varint   bytes of the payload
    meta      meta_len bytes
    payload   data_len bytes: ONE raw LZMA2 stream of the named arrays' byte planes, back to back, by name
    digest    8 bytes  BLAKE2b-64 over everything before it

Every array the payload holds is described in the metadata by its spec, a mapping with a `dtype` and a `shape`
(quantise.pack_array), and named by the spec's path there, the top-level `encoding` key left out:
meta["encoding"]["weights"]["bias"]["scale"] is the array `weights/bias/scale`, meta["constant"] is `constant`
(array_sizes). So the arrays' sizes follow from their specs; version 4 also listed them in a table (~15-25 bytes
per file).

Versions 1-3 (still read) had a fixed 22-byte header (u32 meta_len, u64 data_len), one LZMA2 stream per array
with an offset table, a sha256 digest (32 bytes) and, in the metadata, the run's provenance and the encoder's
estimates. Version 4 dropped what a decoder does not need: a Jp file of discs_3types seed 0, 100 frames, R² 0.995,
went from 1 430 to 1 297 bytes (header and checksum 54 -> 21, metadata 158 -> 82, arrays 1 218 -> 1 194). The
magic and the version stay where every version keeps them, so an older reader refuses a newer file as newer.

A truncated, extended or bit-flipped file fails the length or checksum test before any number is decoded, so a
damaged file can never turn into plausible wrong arrays. The digest guards against corruption (a random error
passes it with probability 2^-64, less than gzip's or PNG's CRC-32 at 2^-32), not against forgery.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpm_inr.codec.meta_dictionary import META_DICTIONARIES
from mpm_inr.errors import UserError

MAGIC = b"MPMINRC\x00"
# 2: a bilinear file may hold its basis as a Chebyshev series (encoding.basis_kind); 3: the metadata is deflated
# against a preset dictionary (~0.45 KB less per file); 4: one payload stream, varint lengths, an 8-byte digest,
# no provenance or encoder estimates in the metadata (~0.1 KB less per file); 5: no table of the arrays' sizes,
# which their specs give (array_sizes); 6: regularly held-out frames as their rule (window.holdout_every)
# instead of their list (0.4 KB at 1 000 frames, 5.1 KB at 10 000); 7: a series may be piecewise over P stretches
# of the window (encoding.series_stretches; a version-6 reader would decode such a file as one series, wrongly);
# 8: a file may code each particle's components apart (encoding.components, mpm_inr.codec.components; a version-7
# reader would take its N·C codes for N particles' and refuse it as inconsistent at best); 9: a piecewise series is
# stored curve by curve (encoding.series_order; a version-8 reader would take its rows for degree-major ones); 10:
# curves may be their values at the training frames, a cubic spline between (encoding.series_knots,
# chebyshev.Knots; a version-9 reader would take them for one series); 11: a file may be the quantised SVD's
# (kind "svd", svd_file), whose keys the dictionary knows, and a file without constant particles stores no mask of
# them (decode.constant_mask; ~10-13 bytes of a 100-frame Jp file, which a version-10 reader would refuse to miss);
# 12: a 2×2 tensor's split file codes its parts (encoding.components "parts", components.TENSOR_PARTS; a version-11
# reader would decode them as the components), with version 11's dictionary; 13: a split file's codes may be
# residuals of a prediction from each particle's neighbours (encoding.codes_predicted, mpm_inr.codec.neighbour_codes;
# a version-12 reader would decode the residuals as the codes), with version 11's dictionary
FORMAT_VERSION = 13
_PREFIX = struct.Struct("<8sH")  # what every version starts with: magic, version
_LEGACY_HEAD = struct.Struct("<8sHIQ")  # versions 1-3: magic, version, meta_len, data_len
_LEGACY_DIGEST = 32  # versions 1-3: sha256
_DIGEST = 8
_DICTIONARY_SINCE = 3
_ONE_STREAM_SINCE = 4
_SIZES_FROM_SPECS_SINCE = 5
# Raw LZMA2 streams: no .xz container (about 60 bytes each), the filter chain is fixed by the format version. A
# 1 MiB dictionary (blobs are mostly smaller) makes each call 5x cheaper than preset 9's 64 MiB; no literal context
# bits (lc=lp=pb=0), as quantised coefficients are nearly independent bytes (1 % smaller on them).
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 20, "lc": 0,
                 "lp": 0, "pb": 0}]
# The same stream format at preset 3: ~4x faster, its sizes 15-18 % larger, by nearly the same factor for the
# candidates of one encoding (screen_size)
_SCREEN_FILTERS = [{**LZMA_FILTERS[0], "preset": 3}]


class CodecError(UserError):
    """A codec file cannot be written or trusted; the message names the file and the fix."""


@dataclass(frozen=True)
class Container:
    """A parsed file: its version, metadata and named blobs (raw bytes, decompressed whatever the version)."""

    version: int
    meta: dict[str, Any]
    blobs: dict[str, bytes]
    n_bytes: int
    meta_bytes: int
    payload_bytes: int

    @property
    def parts(self) -> dict[str, int]:
        """Where the file's bytes go: the coded arrays, the metadata, and header plus checksum."""
        return {"arrays": self.payload_bytes, "metadata": self.meta_bytes,
                "header_checksum": self.n_bytes - self.meta_bytes - self.payload_bytes}


def compress(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


def decompress(data: bytes) -> bytes:
    return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


def payload(blobs: dict[str, bytes]) -> bytes:
    """The blobs as the file stores them: one LZMA2 stream, in name order (array_sizes gives their sizes)."""
    return compress(_in_file_order(blobs))


def payloads_once() -> Callable[[dict[str, bytes]], bytes]:
    """payload(), each content compressed once: a search's finalist and the same point at a larger step
    (encode.Point.rescan) often hold the same blobs under another step in their metadata (S, 100 frames, seed 2,
    R² 0.995: 12 finalists, 6 distinct payloads, 0.2-0.4 s each compressed for real)."""
    packed: dict[bytes, bytes] = {}

    def payload_of(blobs: dict[str, bytes]) -> bytes:
        data = _in_file_order(blobs)
        key = hashlib.blake2b(data, digest_size=16).digest()
        if key not in packed:
            packed[key] = compress(data)
        return packed[key]

    return payload_of


def screen_size(blobs: dict[str, bytes]) -> int:
    """A fast stand-in for len(payload(blobs)) to rank candidate files by: a C file's encoder compared 40-odd
    candidates at ~0.15 s each; ranked by this, only the near-best are compressed for real. Each content is
    screened once (_SCREENED)."""
    data = _in_file_order(blobs)
    key = hashlib.blake2b(data, digest_size=16).digest()  # ~1 ms a MB, where the screen takes ~20
    size = _SCREENED.pop(key, None)
    if size is None:
        size = len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=_SCREEN_FILTERS))
        if len(_SCREENED) >= SCREENED_MEMO:
            del _SCREENED[next(iter(_SCREENED))]  # the least recently asked
    _SCREENED[key] = size
    return size


#: screened sizes kept by content digest: a search screens the same bytes again (a direction cap that keeps
#: every direction, a code order probed at the same codes: C, 100 frames, seed 0, R² 0.999, 14 of 158 screens;
#: S seed 0, 48 of 269)
SCREENED_MEMO = 4096
_SCREENED: dict[bytes, int] = {}


def blobs_digest(blobs: dict[str, bytes]) -> bytes:
    """A digest of the blobs as a payload would hold them: two candidate files with the same one are the same."""
    return _digest(_in_file_order(blobs) + repr(sorted((name, len(blob)) for name, blob in blobs.items())).encode())


def _in_file_order(blobs: dict[str, bytes]) -> bytes:
    return b"".join(blobs[name] for name in sorted(blobs))


def pack_meta(text: bytes, version: int) -> bytes:
    """From version 3, raw deflate (no zlib header) against the version's preset dictionary: the keys and
    structure every file shares cost a back-reference instead of their text."""
    if version < _DICTIONARY_SINCE:
        return compress(text)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=META_DICTIONARIES[version])
    return packer.compress(text) + packer.flush()


def unpack_meta(blob: bytes, version: int) -> bytes:
    if version < _DICTIONARY_SINCE:
        return decompress(blob)
    unpacker = zlib.decompressobj(-15, zdict=META_DICTIONARIES[version])
    return unpacker.decompress(blob) + unpacker.flush()


def meta_blob(meta: dict[str, Any]) -> bytes:
    """The packed metadata (its arrays' specs give their sizes: array_sizes)."""
    return pack_meta(json.dumps(meta, separators=(",", ":"), sort_keys=True).encode(), FORMAT_VERSION)


def array_sizes(meta: dict[str, Any]) -> dict[str, int]:
    """Bytes of every array the metadata describes, by name: each mapping with a `dtype` and a `shape` is an
    array's spec, named by its path (the top-level `encoding` key left out), a spec nested in one (a `scale`)
    included."""
    sizes: dict[str, int] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        if "dtype" in node and "shape" in node:
            sizes["/".join(path)] = np.dtype(node["dtype"]).itemsize * math.prod(node["shape"])
        for key, value in node.items():
            walk(value, path + (str(key),))

    for key, value in meta.items():
        walk(value, () if key == "encoding" else (key,))
    return sizes


def file_bytes(meta_len: int, payload_len: int) -> int:
    """A file's bytes from its packed metadata's and payload's: the rest is header and digest."""
    return _PREFIX.size + len(_varint(meta_len)) + len(_varint(payload_len)) + meta_len + payload_len + _DIGEST


def pack(meta: dict[str, Any], blobs: dict[str, bytes], packed_payload: bytes | None = None) -> bytes:
    """The file's bytes from the metadata and the raw blobs (`packed_payload`: their payload(), if already made)."""
    listed, actual = array_sizes(meta), {name: len(blob) for name, blob in blobs.items()}
    if listed != actual:
        raise CodecError(f"the arrays {sorted(set(listed.items()) ^ set(actual.items()))} do not match their specs "
                         f"in the metadata; this is a bug in the encoder")
    meta_part = meta_blob(meta)
    data = payload(blobs) if packed_payload is None else packed_payload
    body = (_PREFIX.pack(MAGIC, FORMAT_VERSION) + _varint(len(meta_part)) + _varint(len(data)) + meta_part
            + data)
    return body + _digest(body)


def write(path: str | os.PathLike, meta: dict[str, Any], blobs: dict[str, bytes],
          packed_payload: bytes | None = None) -> int:
    """Write atomically (a reader never sees half a file); returns the bytes on disk."""
    path = Path(path)
    data = pack(meta, blobs, packed_payload)
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
    if len(data) < _PREFIX.size:
        raise CodecError(f"{name} is truncated ({len(data)} bytes, shorter than the header); encode it again")
    _, version = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise CodecError(f"{name} has format version {version}, newer than this reader's {FORMAT_VERSION}; "
                         f"update mpm-inr to decode it")
    if version < _ONE_STREAM_SINCE:
        return _parse_legacy(data, name, version)
    at = _PREFIX.size
    meta_len, at = _read_varint(data, at, name)
    data_len, at = _read_varint(data, at, name)
    meta_part, stream = _checked(data, name, at, meta_len, data_len, _DIGEST, _digest)
    meta = _meta(meta_part, version, name)
    try:
        raw = decompress(stream)
    except lzma.LZMAError:
        raise CodecError(f"{name} has a payload this reader cannot decompress; encode it again") from None
    try:
        table = meta.pop("blobs") if version < _SIZES_FROM_SPECS_SINCE else array_sizes(meta)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CodecError(f"{name} has metadata whose arrays this reader cannot size; encode it again") from None
    if sum(table.values()) != len(raw):
        raise CodecError(f"{name} holds {len(raw)} payload bytes where its table lists {sum(table.values())}; it "
                         f"is inconsistent, encode it again")
    blobs, offset = {}, 0
    for key in sorted(table):
        blobs[key] = raw[offset:offset + table[key]]
        offset += table[key]
    return Container(version, meta, blobs, len(data), meta_len, data_len)


def _parse_legacy(data: bytes, name: str, version: int) -> Container:
    """Versions 1-3: a fixed header, one LZMA2 stream per blob at offsets the metadata lists, sha256."""
    if len(data) < _LEGACY_HEAD.size:
        raise CodecError(f"{name} is truncated ({len(data)} bytes, shorter than the header); encode it again")
    _, _, meta_len, data_len = _LEGACY_HEAD.unpack_from(data)
    meta_part, stream = _checked(data, name, _LEGACY_HEAD.size, meta_len, data_len, _LEGACY_DIGEST,
                                 lambda body: hashlib.sha256(body).digest())
    meta = _meta(meta_part, version, name)
    try:
        blobs = {key: decompress(stream[off:off + size]) for key, (off, size) in meta.pop("blobs").items()}
    except lzma.LZMAError:
        raise CodecError(f"{name} has a blob this reader cannot decompress; encode it again") from None
    return Container(version, meta, blobs, len(data), meta_len, data_len)


def _checked(data: bytes, name: str, at: int, meta_len: int, data_len: int, digest_len: int,
             digest: Callable[[bytes], bytes]) -> tuple[bytes, bytes]:
    """The metadata and payload bytes after the length and checksum tests."""
    expected = at + meta_len + data_len + digest_len
    if len(data) < expected:
        raise CodecError(f"{name} is truncated ({len(data)} of {expected} bytes); copy or encode it again")
    if len(data) > expected:
        raise CodecError(f"{name} has {len(data) - expected} unexpected trailing bytes; copy or encode it again")
    if digest(data[:-digest_len]) != data[-digest_len:]:
        raise CodecError(f"{name} fails its checksum (the file is corrupted); copy or encode it again")
    return data[at:at + meta_len], data[at + meta_len:at + meta_len + data_len]


def _meta(blob: bytes, version: int, name: str) -> dict[str, Any]:
    try:
        return json.loads(unpack_meta(blob, version))
    except (zlib.error, lzma.LZMAError, ValueError):  # checksum-consistent but not ours: a forged or foreign file
        raise CodecError(f"{name} has metadata this reader cannot parse (format version {version}); encode it "
                         f"again") from None


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_DIGEST).digest()


def _varint(value: int) -> bytes:
    """LEB128: 7 bits a byte, low first; a 1.4 KB payload's length takes 2 bytes instead of 8."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int, name: str) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise CodecError(f"{name} is truncated (its header ends early); copy or encode it again")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at
