"""The claude policy's request: the system prompt, the tool schemas, the user turn built from the study view
(instructions, memory, statistics, UCB scores, nodes, the allow-list, the code-modification section) and the field
plot as an image block."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.policies.claude.llm_cost import png_size
from agent.policies.claude.settings import ClaudeSettings
from agent.policies.code_context import code_section_for_view
from agent.study.stats import beaten_by
from agent.study.tree import format_scores
from agent.study.view import STRATEGIES, StudyView
from mpm_inr.config.fields import FIELD_NAMES

PROPOSE_TOOL = "propose_children"
END_BLOCK_TOOL = "end_block"
_FIELDS = FIELD_NAMES
_MAX_IMAGE_BYTES = 5 * 1024 * 1024  # the API's per-image limit
_METRIC_KEYS = ("status", "error", "diverged_step", "final_r2", "final_mse", "r2_per_component", "r2_min_component",
                "pearson_r2", "slope", "intercept", "total_params", "n_values", "compression_ratio",
                "svd_r2_same_params", "training_time", "wall_time", "steps", "steps_per_s", "ssim", "ssim_mean", "kinograph_r2",
                "kinograph_ssim", "holdout_r2", "holdout_mse", "svd", "inr_type", "field", "n_training_frames")


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


def build_request(settings: ClaudeSettings, view: StudyView, call_type: str,
                  slots: Sequence[str]) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The messages.create arguments and the pixel sizes of the images in them."""
    text = build_prompt(view, call_type=call_type, slots=slots, limit=settings.max_section_chars)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    sizes: list[tuple[int, int]] = []
    if settings.send_image:
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
    body = {"model": settings.model, "max_tokens": int(settings.max_tokens), "system": SYSTEM_PROMPT,
            "messages": [{"role": "user", "content": content}], "tools": [tool],
            "tool_choice": {"type": "tool", "name": tool["name"], "disable_parallel_tool_use": True}}
    return body, sizes
