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

import base64
import copy
import json
import math
import os
import reprlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agent.policies import heuristic
from agent.policies.base import Policy
from agent.policies.claude.llm_cost import (
    ModelPrice,
    estimate_request_usd,
    png_size,
    usage_cost,
)
from agent.policies.claude.transcripts import (
    TranscriptStore,
    elide_images,
    now_iso,
    redact_headers,
    scrub,
)
from agent.policies.code_context import code_section_for_view
from agent.runs.overrides import OverrideError, Validator, merge
from agent.study.proposal import BlockEndDecision, Proposal
from agent.study.stats import beaten_by
from agent.study.tree import format_scores
from agent.study.view import STRATEGIES, StudyView
from mpm_inr.errors import ConfigError, UserError

#: Not in the installed SDK's DEPRECATED_MODELS (tests/test_policy_claude.py checks it) and priced in
#: agent.policies.claude.llm_cost: the "speed and intelligence" tier is enough for one-parameter decisions.
DEFAULT_MODEL = "claude-sonnet-4-6"
API_KEY_ENV = "ANTHROPIC_API_KEY"
PROPOSE_TOOL = "propose_children"
END_BLOCK_TOOL = "end_block"
_FIELDS = ("Jp", "F", "S", "C")
_MAX_IMAGE_BYTES = 5 * 1024 * 1024  # the API's per-image limit
_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401: "was rejected (401 authentication error)", 403: "lacks permission (403)"}
_METRIC_KEYS = ("status", "error", "diverged_step", "final_r2", "final_mse", "r2_per_component", "r2_min_component",
                "pearson_r2", "slope", "intercept", "total_params", "n_values", "compression_ratio",
                "svd_r2_same_params", "training_time", "wall_time", "steps", "steps_per_s", "ssim", "ssim_mean", "kinograph_r2",
                "kinograph_ssim", "holdout_r2", "holdout_mse", "svd", "inr_type", "field", "n_training_frames")


class MissingAPIKeyError(UserError):
    """policy=claude without ANTHROPIC_API_KEY."""


class LLMAccessError(UserError):
    """The API refused the key or the model; retrying or falling back would only hide it."""


@dataclass
class ClaudeSettings:
    """Defaults of `policy=claude`; every field is a config key of the policy group (see `from_config`)."""

    model: str = DEFAULT_MODEL
    max_tokens: int = 4096
    timeout_s: float = 180.0
    max_retries: int = 4
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    send_image: bool = True
    max_section_chars: int = 24000
    max_usd: float = 5.0
    max_iterations: int = 200
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], budget: Mapping[str, Any] | None = None) -> ClaudeSettings:
        """Build from the policy group; `budget` (max_usd, max_iterations) may live in `cfg["budget"]` or apart.

        Unknown keys are ignored only if they belong to other layers (name, fallback, transcripts); anything else
        is a one-line ConfigError, so a typo cannot silently leave a default (e.g. an uncapped budget) in place.
        """
        known = {f.name for f in fields(cls)}
        other = {"name", "_target_", "budget", "fallback", "transcripts"}
        if any(w in str(k).lower() for k in cfg if k not in known for w in ("key", "token", "secret")):
            raise ConfigError(f"policy: the API key is read from the {API_KEY_ENV} environment variable only; "
                              "remove it from the config")
        bad = sorted(k for k in cfg if k not in known and k not in other)
        if bad:
            raise ConfigError(f"policy: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        values = {k: v for k, v in cfg.items() if k in known}
        for k, v in dict(budget or cfg.get("budget") or {}).items():
            if k not in ("max_usd", "max_iterations"):
                raise ConfigError(f"budget: unknown key '{k}'; known: max_usd, max_iterations")
            values[k] = v
        s = cls(**values)
        s._check()
        return s

    def _check(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or v < 0 or (v == 0 and not allow_zero):
                raise ConfigError(f"policy.{name} must be a {'non-negative' if allow_zero else 'positive'} number, "
                                  f"got {v!r}")

        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("policy.model must be a model name such as claude-sonnet-4-6")
        for name in ("max_tokens", "timeout_s", "max_section_chars"):
            positive(name)
        for name in ("max_retries", "backoff_base_s", "backoff_max_s", "max_usd", "max_iterations"):
            positive(name, allow_zero=True)
        if (self.price_input_per_mtok is None) != (self.price_output_per_mtok is None):
            raise ConfigError("policy.price_input_per_mtok and price_output_per_mtok must be given together")

    @property
    def price_override(self) -> ModelPrice | None:
        if self.price_input_per_mtok is None:
            return None
        return ModelPrice.from_io(float(self.price_input_per_mtok), float(self.price_output_per_mtok))


def read_api_key() -> str:
    """The key from ANTHROPIC_API_KEY, or a one-line MissingAPIKeyError (raised before anything runs)."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise MissingAPIKeyError(f"policy=claude needs the {API_KEY_ENV} environment variable; "
                                 "set it, or use policy=heuristic (offline) or policy=replay")
    return key


# ----------------------------------------------------------------------------------------------------------------
# tool schemas


def propose_schema(n_children: int) -> dict[str, Any]:
    """Input schema of the propose tool for a round of `n_children` slots."""
    child = {
        "type": "object",
        "properties": {
            "slot": {"type": "integer", "minimum": 0, "maximum": n_children - 1,
                     "description": "index of the slot this child fills (0-based, each slot exactly once)"},
            "parent": {"type": ["integer", "null"],
                       "description": "node id of the parent in the current block's UCB tree; null = root "
                                      "(the block's base config), required when the UCB scores are empty"},
            "strategy": {"type": "string", "enum": list(STRATEGIES)},
            "overrides": {"type": "object",
                          "additionalProperties": {"type": ["string", "number", "integer", "boolean"]},
                          "description": "ONLY the keys to change relative to the parent's config, from the "
                                         "allowed-overrides table; plain values (3e-05, 512, true, \"cosine\")"},
            "mutation": {"type": "string",
                         "description": "'param: old -> new' (design document Log Form 'Mutation:' line)"},
            "rationale": {"type": "string", "description": "the parent rule and why this child (one or two "
                                                           "lines)"},
            "log_entry": {"type": "string", "description": "free-text part of the Log Form for this child: "
                                                           "'Parent rule:' and 'Visual:' lines"},
            "observation": {"type": "string", "description": "one line on the LAST result, citing its metrics "
                                                             "(and the plot if attached)"},
            "memory_updates": {"type": "array", "items": {"type": "string"},
                               "description": "short lines for the memory's Emerging Observations"},
            "code_diff": {"type": ["string", "null"],
                          "description": "rare: a unified diff (git format) against the repository; null for "
                                         "config-only children"},
        },
        "required": ["slot", "parent", "strategy", "overrides", "mutation", "rationale", "observation"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"children": {"type": "array", "items": child, "minItems": n_children,
                                    "maxItems": n_children}},
        "required": ["children"],
        "additionalProperties": False,
    }


def end_block_schema(progression: Sequence[int]) -> dict[str, Any]:
    """Input schema of the block-end tool."""
    return {
        "type": "object",
        "properties": {
            "next_field": {"type": "string", "enum": list(_FIELDS)},
            "next_n_training_frames": {"type": "integer", "enum": [int(f) for f in progression]},
            "instruction_edits": {"type": "string",
                                  "description": "text appended to the study's instruction file (new rules "
                                                 "learned this block); empty string = no edit"},
            "summary": {"type": "string", "description": "2-3 lines: the memory's Previous Block Summary"},
            "principles": {"type": "array", "items": {"type": "string"},
                           "description": "principles supported by at least 3 runs, each citing node ids"},
            "open_questions": {"type": "array", "items": {"type": "string"}},
            "hypothesis": {"type": "string", "description": "prediction the next block tests"},
            "ucb_c": {"type": ["number", "null"], "minimum": 0.5, "maximum": 3.0,
                      "description": "exploration constant of the next block; null = keep"},
            "next_overrides": {"type": "object",
                               "additionalProperties": {"type": ["string", "number", "integer", "boolean"]},
                               "description": "extra changes to the next block's base config (allow-list)"},
        },
        "required": ["next_field", "next_n_training_frames", "instruction_edits", "summary"],
        "additionalProperties": False,
    }


SYSTEM_PROMPT = """\
You steer an automated study that maps the training landscape of implicit neural representations (SIREN-type INRs \
and variants) fitted to Material Point Method particle fields (F deformation gradient, Jp plastic volume ratio, \
S stress, C APIC affine matrix). Code runs every training, measures it and keeps the journal; you make the \
decisions, and you answer ONLY by calling the tool you are given.

Each round you choose, for every slot, a parent node from the current block's UCB tree and ONE change to its \
configuration (the mutation), following the study's instruction file and strategy table. Ground every observation \
in the metrics shown (R² to the digits given, slope, training time, compression ratio); say "no plot" rather than \
describing a plot you were not sent. Rules that code enforces, so a violation costs a repair turn:
- parent is a node id listed in the UCB scores of this block, or null (root = the block's base config); when the \
UCB scores are empty, parent must be null;
- overrides holds only the keys to change relative to the parent, each from the allowed-overrides table and \
inside its range, as plain JSON values; no Hydra syntax, no other keys;
- a configuration that already failed (diverged, crashed, timed out) is never re-run;
- one child per slot, slots numbered from 0.
At a block end you summarise the block, keep only principles that at least 3 runs support (cite node ids), and \
choose the next block's field and n_training_frames from the progression.
"""


# ----------------------------------------------------------------------------------------------------------------
# prompt


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit // 3] + f"\n[... {len(text) - limit} characters cut ...]\n" + text[-(2 * limit) // 3:]


def _read(path: Path | None, limit: int, missing: str) -> str:
    if path is None or not Path(path).is_file():
        return missing
    text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
    return _clip(text, limit) if text else missing


def _metrics_subset(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in _METRIC_KEYS if metrics.get(k) is not None}


def _node_line(view: StudyView, n: Any) -> str:
    parent = "root" if n.parent_id is None else str(n.parent_id)
    parts = [f"Node {n.node_id} (iter {n.iteration}, parent={parent}, status={n.status}, strategy={n.strategy or '-'})"]
    if n.changes:
        parts.append("changes " + ", ".join(f"{k}: {v[0]} -> {v[1]}" if isinstance(v, (list, tuple)) and len(v) == 2
                                            else f"{k}: {v}" for k, v in sorted(n.changes.items())))
    elif n.mutation:
        parts.append(f"mutation {n.mutation}")
    m = n.metrics or {}
    for key, fmt in (("final_r2", "{:.6f}"), ("slope", "{:.4f}"), ("compression_ratio", "{:.3g}"),
                     ("svd_r2_same_params", "{:.6f}"), ("training_time", "{:.1f}s")):
        v = m.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            parts.append(f"{key}={fmt.format(v)}")
    beaten = beaten_by(m) if n.status == "ok" else None
    if beaten:
        parts.append(beaten)
    if n.error:
        parts.append(f"error: {str(n.error)[:200]}")
    return "; ".join(parts)


def build_prompt(view: StudyView, *, call_type: str, slots: Sequence[str], limit: int) -> str:
    """The user-turn text: instructions, memory, block statistics, UCB scores, nodes, last metrics, allow-list."""
    blk = view.block
    head = [(f"Study {view.name}: block {blk.block}, iteration {view.iteration} "
             f"({view.iter_in_block}/{view.n_iter_block} within block). Field {view.field}, "
             f"n_training_frames {view.n_training_frames}, ucb_c {blk.ucb_c:g}.")]
    if call_type == "propose":
        roles = ", ".join(f"{i}={r}" for i, r in enumerate(slots))
        head.append(f"Call {PROPOSE_TOOL} with exactly {len(slots)} child(ren); slot roles: {roles} "
                    "(\"auto\": the strategy table decides).")
    else:
        head.append(f">>> BLOCK END <<< Block {blk.block} is complete. Call {END_BLOCK_TOOL} to summarise it and "
                    "choose the next block.")
    sections = ["\n".join(head)]
    sections.append("## Instructions (study instruction file; follow them)\n"
                    + _read(view.instructions_path, limit, "(no instruction file)"))
    sections.append("## Working memory\n" + _read(view.memory_path, limit, "(empty)"))
    stats = {k: v for k, v in view.stats.to_dict().items() if v is not None}
    sections.append("## Block statistics (computed by code)\n" + "\n".join(f"{k}: {v}" for k, v in stats.items()))
    if view.established:
        sections.append("## Established effects (>= 3 consistent runs)\n"
                        + "\n".join(f"- {e.param} {e.direction} ({e.field}, {e.inr_type}): mean {e.mean:+.2f} nines "
                                    f"over nodes {e.nodes}" for e in view.established))
    if view.open_questions:
        sections.append("## Open questions (tentative or contradicted effects)\n"
                        + "\n".join(f"- {e.param} {e.direction}: {e.level}, nines={[round(d, 2) for d in e.deltas]} "
                                    f"nodes {e.nodes}" for e in view.open_questions))
    first = blk.first_iteration
    ucb = format_scores(list(view.ucb), block=blk.block, first_iteration=first,
                        last_iteration=max(first, view.iteration - 1), c=blk.ucb_c)
    sections.append("## UCB scores (ucb_scores.txt)\n"
                    + (ucb.strip() if ucb else "(empty: no node in this block yet, so parent must be null = root)"))
    sections.append("## Block base config (parent=null)\n" + (" ".join(blk.base_overrides) or "(trainer defaults)"))
    if view.block_nodes:
        sections.append("## Nodes of this block\n" + "\n".join(_node_line(view, n) for n in view.block_nodes))
    last = view.last_node
    if last is not None:
        sections.append(f"## Last run (node {last.node_id}) metrics\n"
                        + json.dumps(_metrics_subset(last.metrics), sort_keys=True, default=str))
    if view.recent_rejections:
        sections.append("## Proposals rejected by validation (never run)\n"
                        + "\n".join(f"- node {n.node_id}: {n.error}" for n in view.recent_rejections))
    sections.append("## Allowed overrides (key: type and range; meaning)\n"
                    + "\n".join(f"{k}: {s.describe()}; {s.doc}" for k, s in sorted(view.specs.items())))
    if call_type == "propose":
        sections.append(code_section_for_view(view, n_slots=len(slots), max_chars=limit))
    plot = "attached below" if view.field_png is not None and Path(view.field_png).is_file() \
        else "no plot available for the last run"
    sections.append(f"## Field plot of the last run: {plot}")
    return "\n\n".join(sections)


def image_block(path: Path | None) -> tuple[dict[str, Any] | None, tuple[int, int] | None, str]:
    """A base64 PNG content block for the field plot, or None with the reason it was skipped."""
    if path is None or not Path(path).is_file():
        return None, None, "no field plot"
    data = Path(path).read_bytes()
    size = png_size(data)
    if size is None:
        return None, None, f"{Path(path).name} is not a PNG"
    if len(data) > _MAX_IMAGE_BYTES:
        return None, None, f"{Path(path).name} exceeds 5 MB"
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(data).decode("ascii")}}
    return block, size, "sent"


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
class _Call:
    """One logical decision: its HTTP attempts, tokens and cost."""

    call_type: str
    records: list[int] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    http_calls: int = 0
    cost_basis: str = ""
    repaired: bool = False


class _CallFailed(Exception):
    """An exchange that produced no usable response after retries (reason is scrubbed, one line)."""


class ClaudePolicy:
    """Claude through the anthropic SDK; see the module docstring."""

    name = "claude"

    def __init__(self, settings: ClaudeSettings, study_dir: Path, fallback: Policy, *, api_key: str | None = None,
                 http_client: Any = None, sleep: Callable[[float], None] = time.sleep,
                 store: TranscriptStore | None | bool = True) -> None:
        self.settings = settings
        self.study_dir = Path(study_dir)
        self.fallback = fallback
        self._key = api_key if api_key is not None else read_api_key()
        self._secrets = [self._key]
        self._sleep = sleep
        if store is True:
            store = TranscriptStore(self.study_dir / "transcripts", secrets=self._secrets)
        self.store: TranscriptStore | None = store or None
        self.budget = Budget(float(settings.max_usd), int(settings.max_iterations))
        if self.store is not None:
            self._restore_budget(self.store.records())
        self._client = self._make_client(http_client)

    # -- plumbing ---------------------------------------------------------------------------------------------

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

    def _scrub(self, text: str) -> str:
        return " ".join(str(scrub(text, self._secrets)).split())

    def _before_send(self, call_type: str, attempt: str, http_try: int) -> None:
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

    def _exchange(self, call: _Call, body: dict[str, Any], attempt: str, context: dict[str, Any],
                  validate: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Send `body` with retries; write one transcript record per HTTP attempt; return the reply body.

        `validate(reply)` runs before the successful attempt's record is written so that the record carries its
        validation outcome (and `accepted_children`, used to restore the iteration budget after a resume).
        """
        import anthropic

        for http_try in range(int(self.settings.max_retries) + 1):
            self._before_send(call.call_type, attempt, http_try)
            started, t0 = now_iso(), time.monotonic()
            record: dict[str, Any] = {
                "call_type": call.call_type, "attempt": attempt, "http_try": http_try,
                "model": self.settings.model, "policy": self.name, "study": context,
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
                                   "message": self._scrub(str(e))[:500]}
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
                failure = f"{type(e).__name__}: {self._scrub(str(e))[:200]}"
                record["error"] = {"type": type(e).__name__, "status": None, "message": failure}
                retry_headers = {}
            except (anthropic.AnthropicError, ValueError, TypeError) as e:  # e.g. a 200 whose body is not JSON
                reply = None
                failure = f"unusable response: {type(e).__name__}: {self._scrub(str(e))[:200]}"
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
            self._write(call, record)
            if reply is not None:
                return reply
            if fatal is not None:
                raise fatal
            if retry_headers is None or http_try >= self.settings.max_retries:
                raise _CallFailed(f"{failure} after {http_try + 1} attempt(s)")
            self._sleep(self._delay(http_try, retry_headers))
        raise _CallFailed("no attempt made")  # only reachable with a negative max_retries, which _check forbids

    def _write(self, call: _Call, record: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.write(record)
            call.records.append(self.store.next_index - 1)

    def _request(self, view: StudyView, call_type: str,
                 slots: Sequence[str]) -> tuple[dict[str, Any], list[tuple[int, int]]]:
        """The messages.create arguments and the pixel sizes of the images in them."""
        text = build_prompt(view, call_type=call_type, slots=slots, limit=self.settings.max_section_chars)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        sizes: list[tuple[int, int]] = []
        if self.settings.send_image:
            img, size, _ = image_block(view.field_png)
            if img is not None:
                content.append(img)
                sizes.append(size)
        if call_type == "propose":
            tool = {"name": PROPOSE_TOOL, "description": "Propose the child runs of this round, one per slot.",
                    "input_schema": propose_schema(len(slots))}
        else:
            spec = view.specs.get("data.n_training_frames")
            progression = spec.choices if spec is not None and spec.choices else (48, 100, 200, 500, 1000)
            tool = {"name": END_BLOCK_TOOL, "description": "Close the block: summary, principles, instruction "
                                                           "edits and the next block's regime.",
                    "input_schema": end_block_schema(progression)}
        body = {"model": self.settings.model, "max_tokens": int(self.settings.max_tokens), "system": SYSTEM_PROMPT,
                "messages": [{"role": "user", "content": content}], "tools": [tool],
                "tool_choice": {"type": "tool", "name": tool["name"], "disable_parallel_tool_use": True}}
        return body, sizes

    def _estimate(self, body: Mapping[str, Any], sizes: list[tuple[int, int]]) -> float:
        chars = len(json.dumps(elide_images(body)))
        return estimate_request_usd(self.settings.model, chars, sizes, int(self.settings.max_tokens),
                                    self.settings.price_override)

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
                check: Callable[[dict[str, Any]], tuple[Any, list[str]]]) -> tuple[Any, _Call, str | None]:
        """Run one decision: (checked result or None, the call's accounting, fallback reason or None)."""
        call = _Call(call_type)
        body, sizes = self._request(view, call_type, slots)
        n_children = len(slots) if call_type == "propose" else 0
        reason = self.budget.refuse(self._estimate(body, sizes), n_children)
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
                self._exchange(call, body, attempt, context, validate)
            except _CallFailed as e:
                return None, call, f"API call failed: {e}"
            if not state["errors"]:
                self.budget.llm_iterations += n_children
                call.repaired = attempt == "repair"
                return state["result"], call, None
            if attempt == "repair":
                return None, call, "reply still invalid after one repair: " + self._scrub("; ".join(state["errors"]))
            body = self._repair_body(body, state["reply"], state["use_id"], state["errors"], tool)
            reason = self.budget.refuse(self._estimate(body, sizes), 0)
            if reason is not None:
                return None, call, reason
        raise AssertionError("unreachable")

    def _llm_record(self, call: _Call, fallback: str | None) -> dict[str, Any]:
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
