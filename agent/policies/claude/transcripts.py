"""Every LLM exchange of a study, one JSON file per HTTP attempt, under `<study>/transcripts/`.

Why: the reference agent kept only the model's final text, so no decision could be audited or replayed. Here each
file holds the request body as sent (image bytes replaced by their hash), the response status, headers and body,
token usage, the estimated cost, timestamps and a call index. `policy=replay` feeds these files back through the
real client in index order, which reproduces the study's decisions without a network or a key.

Secrets never reach disk: request headers are reduced to an allow-list with credentials replaced by
"[REDACTED]", and every string written is scrubbed of the secrets the store was given (the API key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "mpm-inr-llm-transcript/1"
REDACTED = "[REDACTED]"
_NAME = re.compile(r"^(\d{5})_([a-z_]+)\.json$")

_CREDENTIAL_HEADERS = {"authorization", "x-api-key", "proxy-authorization", "cookie", "set-cookie"}
_KEPT_HEADERS = {"anthropic-version", "anthropic-beta", "content-type", "request-id", "retry-after",
                 "retry-after-ms", "x-should-retry", "x-stainless-retry-count"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def redact_headers(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
    """Keep the headers useful for an audit (rate limits, request id); blank out credentials; drop the rest."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        low = name.lower()
        if low in _CREDENTIAL_HEADERS:
            out[low] = REDACTED
        elif low in _KEPT_HEADERS or low.startswith("anthropic-ratelimit-"):
            out[low] = value
    return out


def scrub(obj: Any, secrets: Iterable[str]) -> Any:
    """A copy of `obj` in which every occurrence of a secret inside any string is replaced by REDACTED."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return obj

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            for s in secrets:
                x = x.replace(s, REDACTED)
            return x
        if isinstance(x, Mapping):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(obj)


def elide_images(body: Any) -> Any:
    """A copy of a request body whose base64 image data is replaced by its sha256 and size.

    A field plot is ~100-300 kB of base64 per call; keeping the hash still proves which plot was sent.
    """
    if isinstance(body, Mapping):
        src = body.get("source")
        if body.get("type") == "image" and isinstance(src, Mapping) and src.get("type") == "base64" \
                and isinstance(src.get("data"), str):
            raw = base64.b64decode(src["data"])
            elided = {k: v for k, v in src.items() if k != "data"}
            elided["data_elided"] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
            return {**{k: v for k, v in body.items() if k != "source"}, "source": elided}
        return {k: elide_images(v) for k, v in body.items()}
    if isinstance(body, list):
        return [elide_images(v) for v in body]
    return body


class TranscriptStore:
    """Append-only directory of exchange records; indices continue after a resume."""

    def __init__(self, directory: Path, secrets: Iterable[str] = ()) -> None:
        self.dir = Path(directory)
        self._secrets = [s for s in secrets if s]
        self._next = max((i for i, _ in self._indexed()), default=-1) + 1

    def _indexed(self) -> list[tuple[int, Path]]:
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    @property
    def next_index(self) -> int:
        return self._next

    def write(self, record: Mapping[str, Any]) -> Path:
        """Write one record (scrubbed, with its index) atomically and return its path."""
        self.dir.mkdir(parents=True, exist_ok=True)
        index = self._next
        rec = scrub({"format": FORMAT, "index": index, **record}, self._secrets)
        path = self.dir / f"{index:05d}_{rec.get('call_type', 'call')}.json"
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=1, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._next = index + 1
        return path

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text(encoding="utf-8")) for _, p in self._indexed()]


def load_records(directory: Path) -> list[dict[str, Any]]:
    """All transcript records of a directory in index order (empty if it does not exist)."""
    return TranscriptStore(directory).records()
