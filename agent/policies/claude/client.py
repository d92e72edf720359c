"""The claude policy's exchange with the Anthropic API: the key, the SDK client (its own retries off, so every
attempt is retried here and lands in the transcript), backoff, one transcript record per HTTP attempt
(agent.policies.claude.transcripts) and the running cost in tokens and dollars against the budget
(agent.policies.claude.llm_cost)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.policies.claude.llm_cost import estimate_request_usd, usage_cost
from agent.policies.claude.settings import API_KEY_ENV, ClaudeSettings
from agent.policies.claude.transcripts import (
    TranscriptStore,
    elide_images,
    now_iso,
    redact_headers,
    scrub,
)
from mpm_inr.errors import UserError

_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401: "was rejected (401 authentication error)", 403: "lacks permission (403)"}


class MissingAPIKeyError(UserError):
    """policy=claude without ANTHROPIC_API_KEY."""


class LLMAccessError(UserError):
    """The API refused the key or the model; retrying or falling back would only hide it."""


def read_api_key() -> str:
    """The key from ANTHROPIC_API_KEY, or a one-line MissingAPIKeyError (raised before anything runs)."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise MissingAPIKeyError(f"policy=claude needs the {API_KEY_ENV} environment variable; "
                                 "set it, or use policy=heuristic (offline) or policy=replay")
    return key


@dataclass
class Budget:
    """Running totals against the hard caps (restored from the transcripts after a resume)."""

    max_usd: float
    max_iterations: int
    spent_usd: float = 0.0
    llm_iterations: int = 0
    exhausted: str | None = None

    def refuse(self, estimate_usd: float, n_children: int) -> str | None:
        """The reason a request must not be sent, or None. Once refused, always refused."""
        if self.exhausted is None:
            if self.llm_iterations + n_children > self.max_iterations:
                self.exhausted = (f"budget.max_iterations={self.max_iterations} would be exceeded "
                                  f"({self.llm_iterations} LLM-decided iterations so far, {n_children} more asked)")
            elif self.spent_usd + estimate_usd > self.max_usd:
                self.exhausted = (f"budget.max_usd={self.max_usd:g} would be exceeded (spent ${self.spent_usd:.4f}, "
                                  f"next request up to ${estimate_usd:.4f})")
        return self.exhausted


@dataclass
class Call:
    """One logical decision: its HTTP attempts, tokens and cost."""

    call_type: str
    records: list[int] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    http_calls: int = 0
    cost_basis: str = ""
    repaired: bool = False


class CallFailed(Exception):
    """An exchange that produced no usable response after retries (reason is scrubbed, one line)."""


class ClaudeClient:
    """One policy's connection: sends a request with retries, records every attempt, books its cost. Replay
    (agent.policies.replay) subclasses it to answer from recorded transcripts."""

    def __init__(self, settings: ClaudeSettings, *, api_key: str | None = None, policy_name: str = "claude",
                 http_client: Any = None, sleep: Callable[[float], None] = time.sleep,
                 store: TranscriptStore | None = None) -> None:
        self.settings = settings
        self.policy_name = policy_name
        self._key = api_key if api_key is not None else read_api_key()
        self._secrets = [self._key]
        self._sleep = sleep
        self.store = store
        self.budget = Budget(float(settings.max_usd), int(settings.max_iterations))
        if self.store is not None:
            self._restore_budget(self.store.records())
        self._client = self._make_client(http_client)

    def _make_client(self, http_client: Any) -> Any:
        import anthropic

        kwargs: dict[str, Any] = {"api_key": self._key, "max_retries": 0, "timeout": float(self.settings.timeout_s)}
        if http_client is not None:
            kwargs["http_client"] = http_client
        return anthropic.Anthropic(**kwargs)

    def _restore_budget(self, records: Sequence[Mapping[str, Any]]) -> None:
        for r in records:
            self.budget.spent_usd += float(r.get("cost_usd") or 0.0)
            self.budget.llm_iterations += int(r.get("accepted_children") or 0)

    def scrub(self, text: str) -> str:
        return " ".join(str(scrub(text, self._secrets)).split())

    def before_send(self, call_type: str, attempt: str, http_try: int) -> None:
        """Hook for replay: check that the next recorded exchange is of this kind."""

    def _delay(self, http_try: int, headers: Mapping[str, str] | None) -> float:
        retry_after = None
        if headers:
            for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
                try:
                    retry_after = float(headers.get(name)) * scale
                    break
                except (TypeError, ValueError):
                    continue
        base = self.settings.backoff_base_s * (2.0 ** http_try)
        delay = retry_after if retry_after is not None and retry_after >= 0 else base
        return float(min(delay, self.settings.backoff_max_s))

    def exchange(self, call: Call, body: dict[str, Any], attempt: str, context: dict[str, Any],
                  validate: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Send `body` with retries; write one transcript record per HTTP attempt; return the reply body.

        `validate(reply)` runs before the successful attempt's record is written so that the record carries its
        validation outcome (and `accepted_children`, used to restore the iteration budget after a resume).
        """
        import anthropic

        for http_try in range(int(self.settings.max_retries) + 1):
            self.before_send(call.call_type, attempt, http_try)
            started, t0 = now_iso(), time.monotonic()
            record: dict[str, Any] = {
                "call_type": call.call_type, "attempt": attempt, "http_try": http_try,
                "model": self.settings.model, "policy": self.policy_name, "study": context,
                "request": {"body": elide_images(body)}, "response": None, "error": None,
                "usage": None, "cost_usd": 0.0, "validation": None, "started_at": started,
            }
            retry_headers: Mapping[str, str] | None = None
            failure: str | None = None
            fatal: UserError | None = None
            reply: dict[str, Any] | None = None
            try:
                raw = self._client.messages.with_raw_response.create(**body)
                record["request"]["headers"] = redact_headers(raw.http_request.headers.items())
                record["response"] = {"status": raw.status_code, "headers": redact_headers(raw.headers.items()),
                                      "body": raw.text()[:2000]}
                data = raw.json()
                record["response"]["body"] = data
                if not isinstance(data, dict):
                    raise TypeError("the response body is not a JSON object")
                reply = data
            except anthropic.APIStatusError as e:
                resp = e.response
                record["request"]["headers"] = redact_headers(resp.request.headers.items())
                try:
                    err_body: Any = resp.json()
                except ValueError:
                    err_body = resp.text[:2000]
                record["response"] = {"status": resp.status_code, "headers": redact_headers(resp.headers.items()),
                                      "body": err_body}
                failure = f"HTTP {resp.status_code} {type(e).__name__}"
                record["error"] = {"type": type(e).__name__, "status": resp.status_code,
                                   "message": self.scrub(str(e))[:500]}
                if resp.status_code in _RETRY_STATUS or resp.status_code >= 500:
                    retry_headers = resp.headers
                elif resp.status_code in _FATAL_STATUS:
                    fatal = LLMAccessError(f"the Anthropic API key in {API_KEY_ENV} "
                                           f"{_FATAL_STATUS[resp.status_code]}")
                elif resp.status_code == 404:
                    fatal = LLMAccessError(f"the Anthropic API does not know model '{self.settings.model}' (404); "
                                           "set policy.model to an available model")
                else:
                    retry_headers = None
            except anthropic.APIConnectionError as e:
                failure = f"{type(e).__name__}: {self.scrub(str(e))[:200]}"
                record["error"] = {"type": type(e).__name__, "status": None, "message": failure}
                retry_headers = {}
            except (anthropic.AnthropicError, ValueError, TypeError) as e:  # e.g. a 200 whose body is not JSON
                reply = None
                failure = f"unusable response: {type(e).__name__}: {self.scrub(str(e))[:200]}"
                record["error"] = {"type": type(e).__name__, "status": None, "message": failure}
            record["finished_at"] = now_iso()
            record["duration_s"] = round(time.monotonic() - t0, 3)
            call.http_calls += 1

            if reply is not None:
                usage = dict(reply.get("usage") or {})
                usd, basis = usage_cost(self.settings.model, usage, self.settings.price_override)
                record["usage"], record["cost_usd"], record["cost_basis"] = usage, usd, basis
                call.tokens_in += sum(int(usage.get(k) or 0) for k in
                                      ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
                call.tokens_out += int(usage.get("output_tokens") or 0)
                call.usd += usd
                call.cost_basis = basis
                self.budget.spent_usd += usd
                outcome = validate(reply)
                record["validation"] = {"ok": outcome["ok"], "errors": outcome["errors"]}
                record["accepted_children"] = outcome.get("accepted_children", 0)
            self.write(call, record)
            if reply is not None:
                return reply
            if fatal is not None:
                raise fatal
            if retry_headers is None or http_try >= self.settings.max_retries:
                raise CallFailed(f"{failure} after {http_try + 1} attempt(s)")
            self._sleep(self._delay(http_try, retry_headers))
        raise CallFailed("no attempt made")  # only reachable with a negative max_retries, which _check forbids

    def write(self, call: Call, record: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.write(record)
            call.records.append(self.store.next_index - 1)

    def estimate(self, body: Mapping[str, Any], sizes: list[tuple[int, int]]) -> float:
        chars = len(json.dumps(elide_images(body)))
        return estimate_request_usd(self.settings.model, chars, sizes, int(self.settings.max_tokens),
                                    self.settings.price_override)
