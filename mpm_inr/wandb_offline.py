"""Read back an offline W&B run (`wandb/offline-run-*/run-<id>.wandb`) without network or a server.

The file is a LevelDB-style log (32 KiB blocks, 7-byte record headers, FULL/FIRST/MIDDLE/LAST chunks) of
`wandb_internal_pb2.Record` protobufs. Tests and reports use this to check what was really logged, not merely
that files exist.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32768
_FILE_HEADER = struct.Struct("<4sHB")  # ident ':W&B', magic, version
_RECORD_HEADER = struct.Struct("<IHB")  # crc32, length, type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    pos = _FILE_HEADER.size
    ident, _, _ = _FILE_HEADER.unpack_from(data, 0)
    if ident != b":W&B":
        raise ValueError("not a W&B run file")
    pending = b""
    while pos + _RECORD_HEADER.size <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER.size:
            pos += left_in_block
            continue
        _, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        payload = data[pos:pos + length]
        pos += length
        if kind == _FULL:
            yield payload
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        elif kind == _LAST:
            yield pending + payload
            pending = b""
        elif kind == 0 and length == 0:
            break


@dataclass
class OfflineRun:
    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group: str = ""
    job_type: str = ""
    finished: bool = False
    exit_code: int | None = None


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = list(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    out = OfflineRun()
    for payload in _chunks(files[0].read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.run_id, out.group, out.job_type = rec.run.run_id, rec.run.run_group, rec.run.job_type
            out.tags = list(rec.run.tags)
            _merge_items(out.config, rec.run.config.update, config=True)
        elif kind == "config":
            _merge_items(out.config, rec.config.update, config=True)
        elif kind == "summary":
            _merge_items(out.summary, rec.summary.update)
        elif kind == "history":
            row: dict[str, Any] = {}
            _merge_items(row, rec.history.item)
            out.history.append(row)
        elif kind == "files":
            out.files += [f.path for f in rec.files.files]
        elif kind == "exit":
            out.finished, out.exit_code = True, rec.exit.exit_code
    return out


def _merge_items(target: dict[str, Any], items, config: bool = False) -> None:
    for item in items:
        key = item.key or "/".join(item.nested_key)
        value = json.loads(item.value_json)
        if config and isinstance(value, dict) and "value" in value:
            value = value["value"]
        target[key] = value
