"""`policy=replay`: re-make a recorded claude study's decisions from its transcripts, offline and without a key.

Replay is the claude policy with the network swapped for the recording: the real anthropic client sends each
request to an `httpx2.MockTransport` that answers with the next recorded response (status, headers, body; a
recorded connection error is raised again). Prompt building, retries, schema and override checks, the repair turn,
budget caps and the heuristic fallback all run as they did, so the same study state gives the same proposals.

Records are consumed strictly in index order. Before each HTTP attempt the next record must be of the same kind
(call type propose / end_block, attempt initial / repair, retry number); otherwise, or when the records run out,
replay stops with a one-line ReplayError: the study has diverged from the recorded one, and guessing would make
the replay a different study. Replay writes no transcripts of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2

from agent.policies.base import Policy
from agent.policies.claude.client import Call, ClaudeClient
from agent.policies.claude.policy import ClaudePolicy, build_fallback
from agent.policies.claude.settings import ClaudeSettings
from agent.policies.claude.transcripts import load_records
from mpm_inr.errors import ConfigError, UserError

# Sent to the mock transport only; it is not a credential and nothing leaves the process.
_PLACEHOLDER_KEY = "replay-offline-no-key"


class ReplayError(UserError):
    """The recorded transcripts do not fit the calls the study makes."""


class ReplayClient(ClaudeClient):
    """The claude client with the network swapped for the recorded transcripts; it writes none of its own."""

    def __init__(self, settings: ClaudeSettings, source: Path) -> None:
        self.source = Path(source)
        if not self.source.is_dir():
            raise ReplayError(f"replay: transcript directory {self.source} does not exist")
        self.records = load_records(self.source)
        if not self.records:
            raise ReplayError(f"replay: no transcripts (NNNNN_<call>.json) in {self.source}")
        self.cursor = 0
        settings = dataclasses.replace(settings, model=self.records[0].get("model") or settings.model)
        super().__init__(settings, api_key=_PLACEHOLDER_KEY, policy_name=ReplayPolicy.name,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(self._serve)),
                         sleep=lambda _s: None, store=None)

    def before_send(self, call_type: str, attempt: str, http_try: int) -> None:
        if self.cursor >= len(self.records):
            raise ReplayError(f"replay: the {len(self.records)} transcripts in {self.source} ran out; the study asks "
                              f"for one more {call_type} call ({attempt}, try {http_try})")
        rec = self.records[self.cursor]
        got = (rec.get("call_type"), rec.get("attempt"), int(rec.get("http_try") or 0))
        if got != (call_type, attempt, http_try):
            raise ReplayError(f"replay: transcript {rec.get('index', self.cursor):05d} records a {got[0]} call "
                              f"({got[1]}, try {got[2]}) but the study makes a {call_type} call ({attempt}, try "
                              f"{http_try}): the study has diverged from the recorded run")

    def _serve(self, request: httpx2.Request) -> httpx2.Response:
        rec = self.records[self.cursor]
        self.cursor += 1
        resp = rec.get("response")
        if resp is None:
            err = (rec.get("error") or {}).get("message") or "recorded connection error"
            raise httpx2.ConnectError(f"replayed: {err}", request=request)
        headers = {k: v for k, v in dict(resp.get("headers") or {}).items() if k != "content-length"}
        body = resp.get("body")
        if isinstance(body, (dict, list)):
            return httpx2.Response(int(resp["status"]), json=body, headers=headers, request=request)
        return httpx2.Response(int(resp["status"]), text=str(body or ""), headers=headers, request=request)

    def write(self, call: Call, record: dict[str, Any]) -> None:
        call.records.append(int(self.records[self.cursor - 1].get("index", self.cursor - 1)))


class ReplayPolicy(ClaudePolicy):
    """ClaudePolicy answered from recorded transcripts (see module docstring); `client` is a ReplayClient."""

    name = "replay"
    client: ReplayClient

    def __init__(self, settings: ClaudeSettings, study_dir: Path, fallback: Policy, source: Path) -> None:
        client = ReplayClient(settings, source)  # the recorded model, not the configured one
        super().__init__(client.settings, study_dir, fallback, client=client)


def build(cfg: Mapping[str, Any], ctx: Any) -> ReplayPolicy:
    """Factory for `policy=replay`: `cfg["transcripts"]` is the recorded study's transcripts directory (null: the
    study's own `transcripts/`, i.e. re-deciding a claude study in place)."""
    src = cfg.get("transcripts") or getattr(ctx, "transcripts_dir", None)
    if not src:
        raise ConfigError("policy=replay needs policy.transcripts=<recorded study>/transcripts")
    budget = cfg.get("budget") or (ctx.config.get("budget") if isinstance(getattr(ctx, "config", None), Mapping)
                                   else None)
    settings = ClaudeSettings.from_config({k: v for k, v in cfg.items() if k != "budget"}, budget)
    return ReplayPolicy(settings, ctx.study_dir, build_fallback(cfg, ctx), Path(str(src)).expanduser())
