"""The policy's read-only view of a study state, built from the journal's fold."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.reporting import render
from agent.runs.overrides import Validator
from agent.study.state import NodeState, StudyState
from agent.study.stats import block_stats, principles
from agent.study.tree import scores
from agent.study.view import StudyView
from mpm_inr.errors import StudyError


def build_view(st: StudyState, cfg: Mapping[str, Any], validator: Validator, study_dir: Path, *,
               resolver: Callable[[Sequence[str], str], Any] | None = None,
               rejections: Sequence[NodeState] = (),
               identity: Callable[[Sequence[str]], str] | None = None) -> StudyView:
    """The policy's read-only view of a study state (also used by tests on synthetic journals). `identity` is the
    study's config identity (agent.study.identity.ConfigIdentity); without it configs compare by override list."""
    blk = st.current_block
    if blk is None:
        raise StudyError("the study has no block yet")
    agent = cfg.get("agent") or {}
    min_comp = float(agent.get("min_compression", 1.0))
    finished = [n for n in st.block_nodes(blk.block) if n.finished]
    stats = block_stats(finished, min_compression=min_comp,
                        plateau_window=int(agent.get("plateau_window", 3)),
                        plateau_nines=float(agent.get("plateau_nines", 0.05)),
                        stochastic_spread=float(agent.get("stochastic_spread", 0.1)))
    inr = str((resolver(blk.base_overrides, "inr_type") if resolver else None) or cfg.get("inr_type") or "?")
    est, open_ = principles(list(st.nodes.values()), inr)
    with_png = [n for n in st.launched_nodes() if n.finished and n.field_png]
    paths = render.paths(study_dir, st.name or str(cfg.get("name")))
    return StudyView(
        name=st.name or str(cfg.get("name")), study_dir=study_dir, block=blk, iteration=st.n_iterations + 1,
        iter_in_block=len(st.block_nodes(blk.block)) + 1, n_iter_block=blk.n_iter_block,
        nodes=tuple(st.nodes.values()), block_nodes=tuple(finished),
        ucb=tuple(scores(finished, blk.ucb_c, min_comp)), stats=stats, established=tuple(est),
        open_questions=tuple(open_), specs=dict(validator.specs),
        mutable=tuple((cfg.get("policy") or {}).get("params") or ()), config=dict(cfg),
        instructions_path=paths["instructions"], memory_path=paths["memory"], analysis_path=paths["analysis"],
        ucb_path=paths["ucb"], blocks=tuple(st.blocks), recent_rejections=tuple(rejections),
        field_png=Path(with_png[-1].field_png) if with_png else None, resolver=resolver, identity=identity)
