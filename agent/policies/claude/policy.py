"""`policy=claude`: Claude decides each round through a forced tool call, with cost caps and an offline fallback.

Why this shape (the reference ran the Claude Code CLI and regex-parsed the markdown it wrote):
- the reply is a tool call whose input has a JSON schema, so the decision is data, validated before use: schema,
  parent ids of the current block, the override allow-list (agent.runs.overrides) and no re-run of a failed config;
- a malformed reply gets exactly ONE repair turn (the validation error is sent back as the tool result), then
  the round falls back to the deterministic heuristic policy and the reason is recorded in `Proposal.llm`;
- 408/409/429/5xx and connection errors are retried here with exponential backoff (the SDK's own retries are
  off, so that every attempt lands in the transcript and tests can see it); 401/403/404 stop the study with a
  one-line error, since no retry or fallback can fix a wrong key or model name;
- every HTTP attempt is saved under `<study>/transcripts/` (agent.policies.claude.transcripts) and `policy=replay` feeds them back;
- `budget.max_usd` is checked BEFORE each request against a worst-case estimate (all `max_tokens` used), and
  `budget.max_iterations` caps the children the LLM may decide; once a cap would be exceeded the policy stops
  calling the LLM for the rest of the process and every later round uses the heuristic.

The API key is read from ANTHROPIC_API_KEY only, passed to the client explicitly, and scrubbed from everything
this module writes or raises.
"""

from __future__ import annotations

import copy
import reprlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.policies import heuristic
from agent.policies.base import Policy
from agent.policies.claude.client import Call, CallFailed, ClaudeClient, read_api_key
from agent.policies.claude.prompt import (
    END_BLOCK_TOOL,
    PROPOSE_TOOL,
    build_request,
    end_block_schema,
    propose_schema,
)
from agent.policies.claude.settings import ClaudeSettings
from agent.policies.claude.transcripts import TranscriptStore
from agent.runs.overrides import OverrideError, Validator, block_key_error, merge
from agent.study.proposal import BlockEndDecision, Proposal
from agent.study.view import StudyView

# ----------------------------------------------------------------------------------------------------------------
# reply validation


def _validator(view: StudyView) -> Validator:
    v = Validator()
    v.specs = dict(view.specs)
    return v


def _schema_errors(data: Any, schema: Mapping[str, Any]) -> list[str]:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    out = []
    for e in errors[:8]:
        where = "/".join(str(p) for p in e.path) or "(top level)"
        out.append(f"{where}: {_describe(e)}")
    return out


def _describe(e: Any) -> str:
    """A short schema error: jsonschema's own messages repeat the whole (possibly huge) offending value."""
    shown = reprlib.repr(e.instance)
    if e.validator in ("minItems", "maxItems"):
        return f"expected {e.validator_value} item(s) ({e.validator}), got {len(e.instance)}"
    if e.validator == "enum":
        return f"{shown} is not one of {e.validator_value}"
    if e.validator == "type":
        return f"{shown} is not of type {e.validator_value}"
    if e.validator in ("minimum", "maximum"):
        return f"{shown} is outside the {e.validator} {e.validator_value}"
    return e.message if len(e.message) <= 300 else e.message[:297] + "..."


def tool_input(body: Mapping[str, Any], tool: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(input, tool_use id, error) of the reply's call of `tool`."""
    blocks = body.get("content") or []
    uses = [b for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_use"]
    mine = [b for b in uses if b.get("name") == tool]
    if not mine:
        why = f"stop_reason={body.get('stop_reason')}"
        if uses:
            why += f", called {', '.join(str(b.get('name')) for b in uses)} instead"
        return None, (uses[0].get("id") if uses else None), f"the reply contains no call of tool {tool} ({why})"
    use = mine[0]
    if not isinstance(use.get("input"), Mapping):
        return None, use.get("id"), f"tool {tool} was called with a non-object input"
    if body.get("stop_reason") == "max_tokens":
        return None, use.get("id"), "the reply was cut off at max_tokens; answer more briefly"
    return dict(use["input"]), use.get("id"), None


def check_children(view: StudyView, slots: Sequence[str], data: Mapping[str, Any]) -> tuple[list[dict], list[str]]:
    """Schema plus semantic checks of a propose reply; returns children in slot order with normalised overrides."""
    errors = _schema_errors(data, propose_schema(len(slots)))
    if errors:
        return [], errors
    children = list(data["children"])
    if sorted(c["slot"] for c in children) != list(range(len(slots))):
        return [], [(f"children must fill slots 0..{len(slots) - 1} exactly once, got "
                     f"{[c['slot'] for c in children]}")]
    valid_parents = {n.node_id for n in view.block_nodes if n.finished}
    failed = view.failed_hashes()
    validator = _validator(view)
    out = []
    for c in sorted(children, key=lambda c: c["slot"]):
        where = f"children[slot {c['slot']}]"
        parent = c["parent"]
        if parent is not None and parent not in valid_parents:
            allowed = sorted(valid_parents)
            errors.append(f"{where}.parent: {parent} is not a finished node of block {view.block.block} "
                          f"(allowed: {allowed if allowed else 'none yet, use null'})")
            continue
        try:
            normal = validator.normalise(c["overrides"])
        except OverrideError as e:
            errors.append(f"{where}.overrides: {e}")
            continue
        if (why := block_key_error(normal, view.block.block)) is not None:
            errors.append(f"{where}.overrides: {why}")
            continue
        full = merge(view.overrides_of(parent), normal)
        if view.config_id(full) in failed:
            errors.append(f"{where}: this configuration already failed; choose another change")
            continue
        out.append({**c, "overrides": dict(o.split("=", 1) for o in normal)})
    return out, errors


def check_end_block(view: StudyView, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    spec = view.specs.get("data.n_training_frames")
    progression = spec.choices if spec is not None and spec.choices else (48, 100, 200, 500, 1000, 2000, 5000, 10000)
    errors = _schema_errors(data, end_block_schema(progression))
    if errors:
        return {}, errors
    out = dict(data)
    try:
        normal = _validator(view).normalise(data.get("next_overrides") or {})
        out["next_overrides"] = dict(o.split("=", 1) for o in normal)
    except OverrideError as e:
        return {}, [f"next_overrides: {e}"]
    return out, []


# ----------------------------------------------------------------------------------------------------------------
# the policy


class ClaudePolicy:
    """Claude through the anthropic SDK; see the module docstring."""

    name = "claude"
    needs_plot = True  # attaches the parent's field.png to its prompt (prompt.image_block)

    def __init__(self, settings: ClaudeSettings, study_dir: Path, fallback: Policy, *, api_key: str | None = None,
                 http_client: Any = None, sleep: Callable[[float], None] = time.sleep,
                 store: TranscriptStore | None | bool = True, client: ClaudeClient | None = None) -> None:
        """`client`: a ready exchange (replay's); otherwise one is made from api_key (default: read from the
        environment), http_client, sleep and store (True: the study's `transcripts/`)."""
        self.settings = settings
        self.study_dir = Path(study_dir)
        self.fallback = fallback
        if client is None:
            key = api_key if api_key is not None else read_api_key()
            if store is True:
                store = TranscriptStore(self.study_dir / "transcripts", secrets=[key])
            client = ClaudeClient(settings, api_key=key, policy_name=self.name, http_client=http_client, sleep=sleep,
                                  store=store or None)
        self.client = client

    @staticmethod
    def _repair_body(body: dict[str, Any], reply: Mapping[str, Any], use_id: str | None, errors: list[str],
                     tool: str) -> dict[str, Any]:
        """The same request plus the bad reply and the validation errors, asking for a corrected call."""
        text = (f"Your {tool} call was rejected and nothing was run. Fix these problems and call {tool} again:\n"
                + "\n".join(f"- {e}" for e in errors))
        repaired = copy.deepcopy(body)
        assistant = [b for b in (reply.get("content") or []) if isinstance(b, Mapping)]
        if use_id is not None and assistant:
            repaired["messages"].append({"role": "assistant", "content": assistant})
            user = [{"type": "tool_result", "tool_use_id": use_id, "is_error": True, "content": text}]
        else:
            if assistant:
                repaired["messages"].append({"role": "assistant", "content": assistant})
            user = [{"type": "text", "text": text}]
        repaired["messages"].append({"role": "user", "content": user})
        return repaired

    def _decide(self, view: StudyView, call_type: str, slots: Sequence[str], tool: str,
                check: Callable[[dict[str, Any]], tuple[Any, list[str]]]) -> tuple[Any, Call, str | None]:
        """Run one decision: (checked result or None, the call's accounting, fallback reason or None)."""
        call = Call(call_type)
        body, sizes = build_request(self.settings, view, call_type, slots)
        n_children = len(slots) if call_type == "propose" else 0
        reason = self.client.budget.refuse(self.client.estimate(body, sizes), n_children)
        if reason is not None:
            return None, call, reason
        context = {"block": view.block.block, "iteration": view.iteration, "iter_in_block": view.iter_in_block,
                   "slots": list(slots)}
        for attempt in ("initial", "repair"):
            state: dict[str, Any] = {}

            def validate(reply: dict[str, Any], state: dict[str, Any] = state) -> dict[str, Any]:
                data, use_id, err = tool_input(reply, tool)
                errors = [err] if err else []
                result = None
                if data is not None:
                    result, errors = check(data)
                state.update(result=result, errors=errors, use_id=use_id, reply=reply)
                ok = not errors
                return {"ok": ok, "errors": errors, "accepted_children": n_children if ok else 0}

            try:
                self.client.exchange(call, body, attempt, context, validate)
            except CallFailed as e:
                return None, call, f"API call failed: {e}"
            if not state["errors"]:
                self.client.budget.llm_iterations += n_children
                call.repaired = attempt == "repair"
                return state["result"], call, None
            if attempt == "repair":
                return None, call, "reply still invalid after one repair: " + self.client.scrub("; ".join(state["errors"]))
            body = self._repair_body(body, state["reply"], state["use_id"], state["errors"], tool)
            reason = self.client.budget.refuse(self.client.estimate(body, sizes), 0)
            if reason is not None:
                return None, call, reason
        raise AssertionError("unreachable")

    def _llm_record(self, call: Call, fallback: str | None) -> dict[str, Any]:
        return {"policy": self.fallback.name if fallback else self.name, "model": self.settings.model,
                "call_type": call.call_type, "transcripts": list(call.records), "tokens_in": call.tokens_in,
                "tokens_out": call.tokens_out, "usd": round(call.usd, 8), "calls": call.http_calls,
                "cost_basis": call.cost_basis, "repaired": call.repaired, "fallback": fallback}

    # -- Policy -----------------------------------------------------------------------------------------------

    def propose(self, view: StudyView, slots: list[str]) -> list[Proposal]:
        children, call, reason = self._decide(view, "propose", slots, PROPOSE_TOOL,
                                              lambda data: check_children(view, slots, data))
        record = self._llm_record(call, reason)
        if reason is not None:
            proposals = self.fallback.propose(view, slots)
        else:
            proposals = [Proposal(parent_id=c["parent"], strategy=c["strategy"], overrides=c["overrides"],
                                  mutation=c["mutation"], rationale=c["rationale"],
                                  log_entry=c.get("log_entry", ""), observation=c["observation"],
                                  memory_updates=list(c.get("memory_updates") or []),
                                  code_diff=c.get("code_diff") or None) for c in children]
        for i, p in enumerate(proposals):
            # the round's tokens and dollars are booked once, on slot 0, so journal totals add up
            share = record if i == 0 else {**record, "tokens_in": 0, "tokens_out": 0, "usd": 0.0, "calls": 0,
                                          "shared_with_slot": 0}
            p.llm = {**(p.llm or {}), **share}
        return proposals

    def end_block(self, view: StudyView) -> BlockEndDecision:
        data, call, reason = self._decide(view, "end_block", [], END_BLOCK_TOOL, lambda d: check_end_block(view, d))
        record = self._llm_record(call, reason)
        if reason is not None:
            decision = self.fallback.end_block(view)
        else:
            decision = BlockEndDecision(
                next_field=data["next_field"], next_n_training_frames=int(data["next_n_training_frames"]),
                instruction_edits=data["instruction_edits"], summary=data["summary"],
                principles=list(data.get("principles") or []), open_questions=list(data.get("open_questions") or []),
                hypothesis=data.get("hypothesis") or "", ucb_c=data.get("ucb_c"),
                next_overrides=dict(data.get("next_overrides") or {}))
        decision.llm = {**(decision.llm or {}), **record}
        return decision


def build_fallback(cfg: Mapping[str, Any], ctx: Any) -> Policy:
    """The heuristic policy used when the LLM cannot or may not be called."""
    return heuristic.build(dict(cfg.get("fallback") or {}), ctx)


def build(cfg: Mapping[str, Any], ctx: Any) -> ClaudePolicy:
    """Factory for `policy=claude` (agent.policies.build_policy). Raises MissingAPIKeyError before anything runs."""
    budget = cfg.get("budget") or (ctx.config.get("budget") if isinstance(getattr(ctx, "config", None), Mapping)
                                   else None)
    settings = ClaudeSettings.from_config({k: v for k, v in cfg.items() if k != "budget"}, budget)
    key = read_api_key()
    return ClaudePolicy(settings, ctx.study_dir, build_fallback(cfg, ctx), api_key=key)
