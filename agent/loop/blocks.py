"""Blocks: block 1's base config, the block-end decision (the policy's, checked, else the heuristic's) and the
next block's start from that decision."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from agent.loop.context import StudyContext
from agent.runs.overrides import BLOCK_KEYS, FIELDS, OverrideError, Validator, as_dict
from agent.runs.trainconf import ComposeError
from agent.study.proposal import BlockEndDecision
from agent.study.state import StudyState
from agent.study.stats import best_node
from mpm_inr.errors import ConfigError, UserError

#: A block end rewrites the study's W&B run and its report only once the study has run this many times as long since
#: the last rewrite as that rewrite took, so that they cost at most ~2 % of its wall time: their cost grows with the
#: journal (report figures, every block's row), 3 s at the first block end of the landscape study and 19 s at its
#: 49th, which made 7 of its 93 minutes. The study's end always rewrites them (Explorer._end), so a finished study's
#: W&B run and report hold every block; both are functions of the journal, so a skipped one loses nothing.
REFRESH_GAP_FACTOR = 50.0


def first_base(c: Mapping[str, Any], validator: Validator, compose: Any) -> list[str]:
    """Block 1's base config from `start`, `field`, `n_training_frames`, `inr_type`, checked before anything runs;
    `compose(overrides)` composes the trainer's config (raises ComposeError)."""
    start = dict(c.get("start") or {})
    start["field"] = c["field"]
    start["data.n_training_frames"] = c.get("n_training_frames")
    if c.get("inr_type"):
        start["inr_type"] = c["inr_type"]
    try:
        base = validator.normalise(start)
    except OverrideError as e:
        raise ConfigError(f"start config rejected: {e}") from None
    try:
        compose(base)
    except ComposeError as e:
        raise ConfigError(f"start config does not compose with the trainer's config: {e}") from None
    return base


class BlockKeeper:
    """Starts and ends blocks; each step is one journal event followed by a re-render."""

    def __init__(self, study: StudyContext, base: Sequence[str]):
        self.study = study
        self.first_base = list(base)
        self.min_compression = float((study.cfg.get("agent") or {}).get("min_compression", 1.0))
        self._refreshed: tuple[int, float, float] | None = None  # (block, monotonic end, seconds) of the last rewrite

    def start_first(self) -> None:
        c, base = self.study.cfg, self.first_base
        self.study.emit({"event": "block_start", "block": 1, "field": c["field"],
                         "n_training_frames": int(c["n_training_frames"]), "base_overrides": base,
                         "ucb_c": float(c["ucb_c"]), "n_iter_block": int(c["n_iter_block"]), "first_iteration": 1,
                         "hypothesis": f"Baseline block: map the landscape around the base config "
                                       f"({', '.join(base)}) for {c['field']} at {c['n_training_frames']} frames."})
        self.study.render()

    def end(self, st: StudyState) -> None:
        study = self.study
        view = study.view(st)
        try:
            decision = study.policy.end_block(view)
            problem = self.check_decision(decision)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken policy must not stop the study: the heuristic decides instead
            decision, problem = None, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        fallback = None
        if problem is not None:
            fallback = f"{study.policy_name}: {problem}"
            decision = study.heuristic().end_block(view)
        assert decision is not None
        d = decision.to_dict()
        if fallback:
            d["fallback"] = fallback
        study.emit({"event": "block_end", "block": view.block.block, "decision": d,
                    "stats": view.stats.to_dict()})
        study.out(f"block {view.block.block} ended: {decision.summary}")
        study.render()
        self.refresh_study_run(view.block.block)

    def refresh_study_run(self, block: int, *, force: bool = False) -> None:
        """The study's W&B run and report through `block`, unless the last rewrite was too recent for its cost
        (REFRESH_GAP_FACTOR) or already covers `block`; `force`: whenever `block` is newer than the last one."""
        if self._refreshed is not None:
            last_block, ended, cost = self._refreshed
            if block <= last_block or (not force and time.monotonic() - ended < REFRESH_GAP_FACTOR * cost):
                return
        start = time.monotonic()
        self._study_wandb(block)
        ended = time.monotonic()
        self._refreshed = (block, ended, ended - start)

    def _study_wandb(self, block: int) -> None:
        """Study-level W&B run + report through `block` (agent.reporting.wandb_study); never stops the study."""
        try:  # imported here: wandb and matplotlib are optional at run time, and their failure is only a warning
            from agent.reporting.wandb_study import log_block_end

            run_dir = log_block_end(self.study.study_dir, block)
        except Exception as e:  # noqa: BLE001 - W&B or plotting trouble must not stop a study
            self.study.out(f"warning: study W&B run not updated at block {block}: {type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]}")
            return
        if run_dir is not None:
            self.study.out(f"block {block}: study W&B run written to {run_dir}")

    def check_decision(self, d: Any) -> str | None:
        """Why a block-end decision is unusable, or None."""
        if not isinstance(d, BlockEndDecision):
            return f"end_block returned {type(d).__name__}, not a BlockEndDecision"
        if d.next_field not in FIELDS:
            return f"next_field {d.next_field!r} is not one of {', '.join(FIELDS)}"
        frames = self.study.validator.specs["data.n_training_frames"].choices
        cap = self.study.cfg.get("max_training_frames")
        if d.next_n_training_frames not in frames or (cap is not None and d.next_n_training_frames > cap):
            return f"next_n_training_frames {d.next_n_training_frames!r} is not in the progression {list(frames)}" \
                   + (f" up to {cap}" if cap is not None else "")
        if d.ucb_c is not None and not (isinstance(d.ucb_c, (int, float)) and 0.5 <= d.ucb_c <= 3.0):
            return f"ucb_c {d.ucb_c!r} is outside 0.5-3.0"
        return None

    def start_next(self, st: StudyState) -> None:
        study = self.study
        prev = st.current_block
        assert prev is not None and prev.ended
        d = prev.decision
        best = best_node(st.block_nodes(prev.block), self.min_compression)
        base = dict(as_dict(best.overrides if best is not None else prev.base_overrides))
        base.pop("seed", None)  # robustness re-runs change the seed; a new block starts from the default seed
        base["field"] = d["next_field"]
        base["data.n_training_frames"] = d["next_n_training_frames"]
        notes = []
        extra = dict(d.get("next_overrides") or {})
        for k in BLOCK_KEYS:
            extra.pop(k, None)
        try:
            base_list = study.validator.normalise({**base, **extra})
        except OverrideError as e:
            notes.append(f"next_overrides dropped: {e}")
            base_list = study.validator.normalise(base)
        try:
            study.compose(base_list)
        except ComposeError as e:
            notes.append(f"base config did not compose ({e}); using the previous block's base with the new regime")
            base_list = study.validator.normalise({**as_dict(prev.base_overrides), "field": d["next_field"],
                                                   "data.n_training_frames": d["next_n_training_frames"]})
        ucb_c = d.get("ucb_c") if d.get("ucb_c") is not None else prev.ucb_c
        hyp = d.get("hypothesis") or ""
        if notes:
            hyp = (hyp + " " + " ".join(notes)).strip()
        study.emit({"event": "block_start", "block": prev.block + 1, "field": d["next_field"],
                    "n_training_frames": int(d["next_n_training_frames"]), "base_overrides": base_list,
                    "ucb_c": float(ucb_c), "n_iter_block": int(study.cfg["n_iter_block"]),
                    "first_iteration": st.n_iterations + 1, "hypothesis": hyp,
                    "from_node": best.node_id if best is not None else None})
        study.render()
