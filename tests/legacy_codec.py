"""A writer of the codec's older layouts (versions 1-8), for the tests that older files still decode: the package
only reads them."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from mpm_inr.codec import format

_HEAD = struct.Struct("<8sHIQ")


def write_legacy(path: Path, meta: dict[str, Any], blobs: dict[str, bytes], version: int) -> None:
    """`blobs` are raw byte planes (as format.Container holds them); versions 1-3 coded each in its own LZMA2
    stream, listed at [offset, size] in the metadata, behind a 22-byte header and before a sha256; version 4
    coded them in one stream, as version 5 does, and listed their sizes in the metadata; version 5 is version
    6's layout, its metadata listing held-out frames that version 6 may store as their rule; version 6 is
    version 7's, with an older dictionary and never a piecewise series; version 7 is version 8's, with an older
    dictionary and never a file that codes the components apart; version 8 is version 9's, with an older
    dictionary and never a piecewise series stored curve by curve."""
    assert 1 <= version <= 8
    if version >= 4:
        _write_one_stream(path, meta, blobs, version)
        return
    streams = {name: format.compress(blob) for name, blob in blobs.items()}
    table, offset = {}, 0
    for name, stream in streams.items():
        table[name] = [offset, len(stream)]
        offset += len(stream)
    text = json.dumps({**meta, "blobs": table}, separators=(",", ":"), sort_keys=True).encode()
    meta_part = format.pack_meta(text, version)
    body = _HEAD.pack(format.MAGIC, version, len(meta_part), offset) + meta_part + b"".join(streams.values())
    path.write_bytes(body + hashlib.sha256(body).digest())


def _write_one_stream(path: Path, meta: dict[str, Any], blobs: dict[str, bytes], version: int) -> None:
    table = {"blobs": {name: len(blob) for name, blob in blobs.items()}} if version == 4 else {}
    text = json.dumps({**meta, **table}, separators=(",", ":"), sort_keys=True).encode()
    meta_part, data = format.pack_meta(text, version), format.payload(blobs)
    body = (struct.pack("<8sH", format.MAGIC, version) + format._varint(len(meta_part))
            + format._varint(len(data)) + meta_part + data)
    path.write_bytes(body + hashlib.blake2b(body, digest_size=8).digest())
