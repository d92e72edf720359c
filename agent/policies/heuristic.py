"""The offline default policy: the design document's strategy table, deterministic from a seeded RNG.

Every decision is a function of (policy seed, iteration, slot, number of retries) and the study view, so a
resumed study makes the same decisions as an uninterrupted one.

Strategy table (batch=1 evaluates it top-down; a special strategy fires at most once per `cooldown` iterations):

| condition                                              | strategy         | action                                   |
|--------------------------------------------------------|------------------|------------------------------------------|
| block has no node yet                                  | baseline         | run the block's base config (parent=root)|
| last `switch_after` iterations mutated the same param  | switch-param     | top-UCB parent, mutate another param     |
| `failure_probe_after` consecutive R² ≥ `success_r2`    | failure-probe    | top-UCB parent, extreme value of a param |
| block best R² ≥ `robust_r2` and never re-run           | robustness-test  | re-run the best config with a new seed   |
| two ok nodes R² > `success_r2`, tree distance ≥ 2      | recombine        | better node + one param of the other     |
| n_iter_block/4 consecutive successes                   | explore          | parent outside the recent chain          |
| all runs ok and branching rate < 10%                   | forced-branch    | parent in the bottom half of the UCB list|
| all R² > 0.94 and branching rate < 20%                 | random-branch    | a random node never used as a parent     |
| otherwise                                              | exploit          | top-UCB parent + one mutation            |

Mutation magnitudes are the design document's: lr x2 or /2, width x2 or /2, depth +-1, steps x1.5 or x2, omega
+-10 or x1.5, periods x2 or /2 (failure-probe: the same, twice, or the range bound). Exploit prefers the
direction the study's evidence says improves R² (agent.study.stats.effects) and never proposes a config that failed
before or one already run in this block. A parent whose compression ratio is below `min_compression` gets its
width halved.
Batches use the design document's slot roles (exploit, exploit, explore, principle-test) with distinct mutations
per slot.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.codemod.library import propose_modification
from agent.runs.overrides import (
    BLOCK_KEYS,
    FIELDS,
    OverrideError,
    Validator,
    as_dict,
    merge,
)
from agent.study.describe import as_number, describe_result
from agent.study.mutations import MAGNITUDES
from agent.study.proposal import BlockEndDecision, Proposal
from agent.study.state import NodeState
from agent.study.stats import (
    Effect,
    beaten_by,
    best_node,
    effects,
    fmt_num,
    grade,
    mutated,
    node_regime,
    principles,
)
from agent.study.tree import format_r2
from agent.study.view import StudyView
from mpm_inr.config.fields import FIELD_NAMES

DEFAULT_PARAMS = ("optimizer.lr", "model.hidden_dim", "model.n_layers", "model.omega", "train.total_steps",
                  "data.t_period", "data.xy_period", "model.latent_dim")

FIELD_ROTATION = FIELD_NAMES


@dataclass
class Settings:
    seed: int = 0
    params: tuple[str, ...] = DEFAULT_PARAMS
    success_r2: float = 0.95
    robust_r2: float = 0.99
    branch_r2: float = 0.94
    failure_probe_after: int = 3
    switch_after: int = 4
    cooldown: int = 3
    exclude_by_inr: dict[str, tuple[str, ...]] = field(default_factory=dict)
    min_compression: float = 1.0
    max_training_frames: int | None = None
    stochastic_spread: float = 0.1

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], explore: Mapping[str, Any], seed: int) -> Settings:
        agent = dict(explore.get("agent") or {})
        return cls(seed=seed, params=tuple(cfg.get("params") or DEFAULT_PARAMS),
                   success_r2=float(cfg.get("success_r2", 0.95)), robust_r2=float(cfg.get("robust_r2", 0.99)),
                   branch_r2=float(cfg.get("branch_r2", 0.94)),
                   failure_probe_after=int(cfg.get("failure_probe_after", 3)),
                   switch_after=int(cfg.get("switch_after", 4)), cooldown=int(cfg.get("cooldown", 3)),
                   exclude_by_inr={str(k): tuple(v or ()) for k, v in (cfg.get("exclude_by_inr") or {}).items()},
                   min_compression=float(agent.get("min_compression", 1.0)),
                   max_training_frames=explore.get("max_training_frames"),
                   stochastic_spread=float(agent.get("stochastic_spread", 0.1)))


@dataclass
class Candidate:
    parent_id: int | None
    key: str
    old: Any
    new: Any
    desc: str
    changes: dict[str, Any] = field(default_factory=dict)


class HeuristicPolicy:
    """See the module docstring."""

    name = "heuristic"
    needs_plot = False  # reads metrics only

    def __init__(self, settings: Settings):
        self.s = settings
        self._round_params: set[str] = set()  # parameters already mutated by earlier slots of this round

    # ------------------------------------------------------------------ helpers
    def _rng(self, view: StudyView, slot: int) -> random.Random:
        return random.Random(f"{self.s.seed}:{view.iteration}:{slot}:{len(view.recent_rejections)}")

    def _validator(self, view: StudyView) -> Validator:
        v = Validator()
        v.specs = dict(view.specs)
        return v

    def _step(self, view: StudyView, key: str, cur: Any, step: tuple[str, float], clamp: bool) -> Any:
        spec = view.specs.get(key)
        x = as_number(cur)
        if spec is None or x is None or spec.kind not in ("int", "float"):
            return None
        op, a = step
        y = x * a if op == "mul" else x + a
        if clamp:
            y = min(max(y, float(spec.lo)), float(spec.hi))
        if spec.kind == "int":
            y = round(y)
        else:
            y = float(f"{y:.6g}")
        if not (spec.lo <= y <= spec.hi) or y == x:
            return None
        return y

    def _candidates(self, view: StudyView, parent_id: int | None, *, extreme: bool = False,
                    params: tuple[str, ...] | None = None) -> list[Candidate]:
        out = []
        for key in params or self._params(view):
            cur = view.value(parent_id, key)
            if cur is None or key not in MAGNITUDES:
                continue
            steps = MAGNITUDES[key][1 if extreme else 0]
            for step in steps:
                new = self._step(view, key, cur, step, clamp=extreme)
                if new is None:
                    continue
                old = as_number(cur)
                old_s = fmt_num(int(old) if view.specs[key].kind == "int" else old, 6)
                out.append(Candidate(parent_id, key, cur, new, f"{key}: {old_s} -> {fmt_num(new, 6)}",
                                     {key: new}))
        return out

    def _params(self, view: StudyView) -> tuple[str, ...]:
        inr = str(view.value(None, "inr_type") or "")
        skip = set(self.s.exclude_by_inr.get(inr, ()))
        return tuple(p for p in (view.mutable or self.s.params) if p in view.specs and p not in skip)

    def _adjust(self, view: StudyView) -> dict[str, Any]:
        """The rules this policy wrote at earlier block ends (see `_instruction_edits`), applied from then on."""
        ended = [b for b in view.blocks if b.ended and b.block < view.block.block]
        br = [b.stats.get("branching_rate") for b in ended if b.stats.get("branching_rate") is not None]
        ir = [b.stats.get("improvement_rate") for b in ended if b.stats.get("improvement_rate") is not None]
        return {
            "explore_every": max(2, view.n_iter_block // 4) if any(x < 0.2 for x in br) else None,
            "good_parents_only": any(x < 0.3 for x in ir),
            "failure_probe_after": max(2, self.s.failure_probe_after - 1) if any(x > 0.8 for x in ir)
            else self.s.failure_probe_after,
        }

    def _child_hash(self, view: StudyView, cand: Candidate) -> str | None:
        try:
            changes = self._validator(view).normalise(cand.changes)
        except OverrideError:
            return None
        return view.config_id(merge(view.overrides_of(cand.parent_id), changes))

    def _fresh(self, view: StudyView, cands: list[Candidate], taken: set[str]) -> list[Candidate]:
        """Drop candidates whose config failed anywhere, ran in this block, or is taken by an earlier slot."""
        bad = view.failed_hashes() | view.block_hashes() | taken
        out = []
        for c in cands:
            h = self._child_hash(view, c)
            if h is not None and h not in bad:
                out.append(c)
        return out

    def _effect(self, view: StudyView, key: str, old: Any, new: Any) -> Effect | None:
        inr = str(view.value(None, "inr_type") or "?")
        a, b = as_number(old), as_number(new)
        direction = ("up" if b > a else "down") if a is not None and b is not None else f"{old}->{new}"
        for e in effects(view.nodes, inr):
            if e.param == key and e.direction == direction and e.field == view.field:
                return e
        return None

    def _pick_exploit(self, view: StudyView, cands: list[Candidate], rng: random.Random) -> Candidate:
        """Prefer directions with positive evidence, then untested ones; avoid known-bad directions."""
        scored = []
        for c in cands:
            e = self._effect(view, c.key, c.old, c.new)
            scored.append((c, None if e is None else e.mean, 0 if e is None else e.failures))
        good = [c for c, m, _ in scored if m is not None and m > 0]
        unknown = [c for c, m, _ in scored if m is None]
        if good and rng.random() < 0.7:
            return rng.choice(good)
        if unknown:
            return rng.choice(unknown)
        if good:
            return rng.choice(good)
        return max(scored, key=lambda t: (t[1] if t[1] is not None else 0.0, -t[2], rng.random()))[0]

    def _ranked_parents(self, view: StudyView, *, failed: bool = True) -> list[int]:
        """Parents in UCB order, every successful node before any failed one (a failed node's exploration bonus
        can outscore a weak successful node, and chaining children on crashes wastes the block). With
        `failed=False` failed nodes are left out: they are never exploit parents."""
        ok = [s.node_id for s in view.ucb if s.status == "ok"]
        bad = [s.node_id for s in view.ucb if s.status != "ok"] if failed else []
        if self._adjust(view)["good_parents_only"]:
            good = {s.node_id for s in view.ucb if s.r2 is not None and s.r2 >= self.s.success_r2}
            ok = [i for i in ok if i in good] + [i for i in ok if i not in good]
        return ok + bad

    def _recent_strategies(self, view: StudyView) -> list[str]:
        return [n.strategy for n in view.block_nodes[-self.s.cooldown:]]

    # ------------------------------------------------------------------ strategies
    def _baseline(self, view: StudyView) -> Proposal:
        return Proposal(parent_id=None, strategy="baseline", overrides={}, mutation="none (block base config)",
                        rationale=f"block {view.block.block} starts: run the base config (parent=root)")

    def _mutate_from(self, view: StudyView, parents: list[int | None], rng: random.Random, taken: set[str], *,
                     strategy: str, extreme: bool = False, exclude: tuple[str, ...] = (),
                     rationale: str = "", pick: str = "exploit") -> Proposal | None:
        for pid in parents:
            comp = self._compression(view, pid)
            params = tuple(p for p in self._params(view) if p not in exclude)
            if comp is not None and comp < self.s.min_compression:
                shrink = [c for c in self._candidates(view, pid, params=("model.hidden_dim", "model.latent_dim"))
                          if as_number(c.new) is not None and as_number(c.new) < (as_number(c.old) or 0)]
                shrink = self._fresh(view, shrink, taken)
                if shrink:
                    c = shrink[0]
                    return self._proposal(view, c, strategy, f"parent {pid} has compression {comp:.3g} < "
                                          f"{self.s.min_compression:g}: shrink the model", taken)
            cands = self._fresh(view, self._candidates(view, pid, extreme=extreme, params=params), taken)
            if not cands:
                continue
            other = [c for c in cands if c.key not in self._round_params]  # no repeated mutation across slots
            cands = other or cands
            c = self._pick_exploit(view, cands, rng) if pick == "exploit" else rng.choice(cands)
            return self._proposal(view, c, strategy, rationale, taken)
        return None

    def _compression(self, view: StudyView, pid: int | None) -> float | None:
        if pid is None:
            return None
        return as_number(view.node(pid).metrics.get("compression_ratio"))

    def _proposal(self, view: StudyView, c: Candidate, strategy: str, rationale: str, taken: set[str]) -> Proposal:
        h = self._child_hash(view, c)
        if h:
            taken.add(h)
        self._round_params.add(c.key)
        parent = "root" if c.parent_id is None else f"node {c.parent_id}"
        why = rationale or f"{strategy} from {parent}"
        e = self._effect(view, c.key, c.old, c.new)
        if e is not None:
            why += f"; evidence so far: {e.statement()}"
        return Proposal(parent_id=c.parent_id, strategy=strategy, overrides=dict(c.changes), mutation=c.desc,
                        rationale=why)

    def _exploit(self, view, rng, taken, *, second: bool = False) -> Proposal | None:
        parents = self._ranked_parents(view, failed=False)
        if second and len(parents) > 1:
            parents = parents[1:] + parents[:1]
        top = parents[0] if parents else None
        return self._mutate_from(view, parents or [None], rng, taken, strategy="exploit",
                                 rationale=f"highest-UCB parent {top}" if not second else
                                 "second-ranked UCB parent (slot 2 of the batch)")

    def _switch_param(self, view, rng, taken) -> Proposal | None:
        p = view.stats.same_param
        return self._mutate_from(view, self._ranked_parents(view), rng, taken, strategy="switch-param",
                                 exclude=(p,) if p else (),
                                 rationale=f"{p} was mutated {view.stats.same_param_streak} times in a row: "
                                           f"mutate another parameter")

    def _failure_probe(self, view, rng, taken, why: str = "") -> Proposal | None:
        return self._mutate_from(view, self._ranked_parents(view), rng, taken, strategy="failure-probe",
                                 extreme=True, pick="random",
                                 rationale=why or f"{view.stats.success_streak} consecutive runs with R² ≥ "
                                                  f"{self.s.success_r2}: push one parameter to an extreme to find "
                                                  f"the boundary")

    def _explore(self, view, rng, taken) -> Proposal | None:
        """A parent outside the recent chain (the newest node and its ancestors). When every node of the block is
        on that chain (its runs form one line), the least-visited node, and the rationale says so: it never claims
        "outside the chain" for a parent on it."""
        if not view.block_nodes:
            return self._mutate_from(view, [None], rng, taken, strategy="explore", pick="random",
                                     rationale="the block has no node yet: vary its base config")
        chain: set[int] = set()
        last: NodeState | None = view.block_nodes[-1]
        while last is not None:
            chain.add(last.node_id)
            last = view.node(last.parent_id) if last.parent_id is not None else None
        named = "nodes " + ", ".join(map(str, sorted(chain)))
        ranked = self._ranked_parents(view)
        outside = [i for i in ranked if i not in chain]
        if outside:
            return self._mutate_from(view, outside, rng, taken, strategy="explore", pick="random",
                                     rationale=f"select outside the recent chain ({named})")
        return self._mutate_from(view, sorted(ranked, key=lambda i: (self._visits(view, i), i)), rng, taken,
                                 strategy="explore", pick="random",
                                 rationale=f"every node of the block is on the recent chain ({named}): branch "
                                           "from the least-visited node with an untried mutation instead")

    def _visits(self, view: StudyView, nid: int) -> int:
        for s in view.ucb:
            if s.node_id == nid:
                return s.visits
        return 0

    def _robustness(self, view, rng, taken) -> Proposal | None:
        best = best_node(view.block_nodes, self.s.min_compression)
        if best is None or best.r2 is None or best.r2 < self.s.robust_r2:
            return None
        same = [n for n in view.block_nodes if _same_but_seed(n, best) and n.node_id != best.node_id]
        if same:
            return None
        seed = int(as_number(view.value(best.node_id, "seed")) or 0)
        new_seed = seed + 1
        c = Candidate(best.node_id, "seed", seed, new_seed, f"seed: {seed} -> {new_seed} (re-run)",
                      {"seed": new_seed})
        if not self._fresh(view, [c], taken):
            return None
        return self._proposal(view, c, "robustness-test",
                              f"node {best.node_id} is the block's best (R² {format_r2(best.r2)}): re-run it with "
                              f"another seed to measure run-to-run variance", taken)

    def _recombine(self, view, rng, taken) -> Proposal | None:
        ok = [n for n in view.block_nodes if n.is_ok and n.r2 is not None and n.r2 > self.s.success_r2]
        ok.sort(key=lambda n: (-n.r2, n.node_id))
        for i, a in enumerate(ok):
            for b in ok[i + 1:]:
                if a.parent_id == b.node_id or b.parent_id == a.node_id:
                    continue  # tree distance must be >= 2
                da, db = as_dict(a.overrides), as_dict(b.overrides)
                for key in mutated(b):
                    if key in db and da.get(key) != db[key] and key in view.specs:
                        c = Candidate(a.node_id, key, da.get(key, view.value(a.node_id, key)), db[key],
                                      f"{key}: {da.get(key, view.value(a.node_id, key))} -> {db[key]} "
                                      f"(from node {b.node_id})", {key: db[key]})
                        if self._fresh(view, [c], taken):
                            return self._proposal(view, c, "recombine",
                                                  f"nodes {a.node_id} (R² {format_r2(a.r2)}) and {b.node_id} "
                                                  f"(R² {format_r2(b.r2)}) are both good and not parent-child: "
                                                  f"adopt {key} of node {b.node_id}", taken)
        return None

    def _forced_branch(self, view, rng, taken) -> Proposal | None:
        ranked = self._ranked_parents(view)
        bottom = ranked[len(ranked) // 2:]
        rng.shuffle(bottom)
        return self._mutate_from(view, bottom, rng, taken, strategy="forced-branch", pick="random",
                                 rationale=f"branching rate {view.stats.branching_rate:.0%} < 10% with every run "
                                           f"converged: branch from the bottom half of the tree")

    def _random_branch(self, view, rng, taken) -> Proposal | None:
        used = {n.parent_id for n in view.block_nodes}
        unvisited = [n.node_id for n in view.block_nodes if n.node_id not in used]
        rng.shuffle(unvisited)
        return self._mutate_from(view, unvisited, rng, taken, strategy="random-branch", pick="random",
                                 rationale=f"all R² > {self.s.branch_r2} and branching rate "
                                           f"{view.stats.branching_rate:.0%} < 20%: branch from a node never "
                                           f"used as a parent")

    def _principle_test(self, view, rng, taken) -> Proposal | None:
        est = [e for e in view.established if e.direction in ("up", "down")]
        if not est:
            return self._failure_probe(view, rng, taken, why="principle-test slot: no established principle yet, "
                                                             "so probe a boundary instead")
        n_tests = sum(1 for n in view.nodes if n.strategy == "principle-test")
        e = est[n_tests % len(est)]
        best = best_node(view.block_nodes, self.s.min_compression)
        parents = [best.node_id] if best else [None]
        for pid in parents + self._ranked_parents(view):
            cands = [c for c in self._candidates(view, pid, params=(e.param,))
                     if ((as_number(c.new) or 0) > (as_number(c.old) or 0)) == (e.direction == "up")]
            cands = self._fresh(view, cands, taken)
            if cands:
                return self._proposal(view, rng.choice(cands), "principle-test",
                                      f"test the principle \"{e.statement()}\" in block {view.block.block} "
                                      f"({view.field}, {view.n_training_frames} frames)", taken)
        return None

    # ------------------------------------------------------------------ the table
    def _auto(self, view: StudyView, rng: random.Random, taken: set[str]) -> Proposal | None:
        st = view.stats
        recent = self._recent_strategies(view)
        n = len(view.block_nodes)
        all_ok = n > 0 and st.n_ok == n
        ok_r2 = [x.r2 for x in view.block_nodes if x.r2 is not None]
        adj = self._adjust(view)
        every = adj["explore_every"]
        rules = [
            (st.same_param_streak >= self.s.switch_after, "switch-param", self._switch_param),
            (st.success_streak >= adj["failure_probe_after"], "failure-probe", self._failure_probe),
            (every is not None and n >= 2 and view.iter_in_block % every == 0, "explore", self._explore),
            (n >= 3 and st.best_r2 is not None and st.best_r2 >= self.s.robust_r2, "robustness-test",
             self._robustness),
            (n >= 3, "recombine", self._recombine),
            (st.success_streak >= max(2, view.n_iter_block // 4), "explore", self._explore),
            (n >= 4 and all_ok and st.branching_rate is not None and st.branching_rate < 0.1, "forced-branch",
             self._forced_branch),
            (n >= 4 and bool(ok_r2) and len(ok_r2) == n and min(ok_r2) > self.s.branch_r2
             and st.branching_rate is not None and st.branching_rate < 0.2, "random-branch", self._random_branch),
        ]
        for cond, name, fn in rules:
            if cond and (name == "switch-param" or name not in recent):
                p = fn(view, rng, taken)
                if p is not None:
                    return p
        return self._exploit(view, rng, taken)

    def propose(self, view: StudyView, slots: list[str]) -> list[Proposal]:
        taken: set[str] = set()
        self._round_params = set()
        out: list[Proposal] = []
        baseline_done = bool(view.block_nodes)
        code_done = False
        for i, role in enumerate(slots):
            rng = self._rng(view, i)
            p: Proposal | None = None
            if not baseline_done:
                baseline_done = True
                base_hash = view.config_id(view.block.base_overrides)
                if base_hash not in view.failed_hashes():
                    taken.add(base_hash)
                    p = self._baseline(view)
            if p is None and not view.block_nodes and i > 0:
                p = self._mutate_from(view, [None], rng, taken, strategy="explore", pick="random",
                                      rationale="first round of the block: vary the base config")
            if p is None and not code_done and role in ("auto", "explore"):
                p = propose_modification(view)  # issue 6: only when R² is stuck and codemod.enabled (else None)
                code_done = p is not None
            if p is None:
                if role == "auto":
                    p = self._auto(view, rng, taken)
                elif role == "exploit":
                    p = self._exploit(view, rng, taken, second=sum(r == "exploit" for r in slots[:i]) > 0)
                elif role == "explore":
                    p = self._explore(view, rng, taken)
                elif role == "principle-test":
                    p = self._principle_test(view, rng, taken)
                if p is None:  # every strategy exhausted its candidates: any fresh mutation of any node
                    p = self._mutate_from(view, self._ranked_parents(view) or [None], rng, taken,
                                          strategy="explore", pick="random",
                                          rationale="preferred strategy had no untried config left")
            if p is None:
                raise_no_candidate(view)
            p.observation = observe(view)  # evidence lines are rendered from the journal, not stored twice
            out.append(p)
        return out

    # ------------------------------------------------------------------ block end
    def end_block(self, view: StudyView) -> BlockEndDecision:
        st = view.stats
        blk = view.block
        inr = str(view.value(None, "inr_type") or "?")
        best = best_node(view.block_nodes, self.s.min_compression)
        frames_prog = tuple(view.specs["data.n_training_frames"].choices)
        cap = self.s.max_training_frames
        higher = [f for f in frames_prog if f > blk.n_training_frames and (cap is None or f <= cap)]
        tested = {(b.field, b.n_training_frames) for b in view.blocks}

        def rotate(field: str) -> str:
            return FIELD_ROTATION[(FIELD_ROTATION.index(field) + 1) % len(FIELD_ROTATION)] \
                if field in FIELD_ROTATION else FIELDS[0]

        option_a = (rotate(blk.field), blk.n_training_frames)
        option_b = (blk.field, higher[0]) if higher else None
        prefer_b = blk.block % 2 == 0 and option_b is not None and not st.stochastic
        order = [option_b, option_a] if prefer_b else [option_a, option_b]
        choice = next((o for o in order if o is not None and o not in tested), None)
        if choice is None:  # every simple option was studied: keep rotating the field
            f = blk.field
            for _ in FIELD_ROTATION:
                f = rotate(f)
                if (f, blk.n_training_frames) not in tested:
                    break
            choice = (f, blk.n_training_frames)
        next_field, next_frames = choice

        next_overrides: dict[str, Any] = {}
        if next_frames != blk.n_training_frames and "train.total_steps" in self._params(view) and best is not None:
            steps = as_number(view.value(best.node_id, "train.total_steps"))
            spec = view.specs["train.total_steps"]
            if steps:
                scaled = int(min(max(round(steps * next_frames / blk.n_training_frames), spec.lo), spec.hi))
                next_overrides["train.total_steps"] = scaled

        edits, new_c = self._instruction_edits(view)
        est, open_ = principles(view.nodes, inr)
        summary = self._summary(view, best)
        why = ("stochastic re-runs (spread > 0.1): switch field" if st.stochastic
               else "raise n_training_frames (option B)" if next_field == blk.field
               else "rotate the field (option A)")
        hyp = self._hypothesis(view, best, next_field, next_frames, next_overrides, est)
        return BlockEndDecision(
            next_field=next_field, next_n_training_frames=next_frames,
            instruction_edits=edits, summary=summary + f" Next: {why}.",
            principles=[e.statement() for e in est], open_questions=[e.statement() for e in open_],
            hypothesis=hyp, ucb_c=new_c, next_overrides=next_overrides)

    def _instruction_edits(self, view: StudyView) -> tuple[str, float | None]:
        """The design document's block-end self-checks, applied to this block's statistics."""
        st, blk = view.stats, view.block
        rules = []
        new_c: float | None = None
        br, ir = st.branching_rate, st.improvement_rate
        if br is not None and br < 0.2:
            rules.append(f"Block {blk.block}: branching rate {br:.0%} < 20%: from now on, every "
                         f"{max(2, view.n_iter_block // 4)} iterations one selects a parent outside the recent "
                         f"chain (explore).")
        if br is not None and br > 0.8:
            new_c = 1.0
            rules.append(f"Block {blk.block}: branching rate {br:.0%} > 80% (search wanders): ucb_c lowered to 1.0.")
        if ir is not None and ir < 0.3:
            rules.append(f"Block {blk.block}: improvement rate {ir:.0%} < 30%: from now on, exploit more: nodes "
                         f"with R² ≥ {self.s.success_r2} are preferred as parents over higher-UCB weaker nodes.")
        if ir is not None and ir > 0.8:
            rules.append(f"Block {blk.block}: improvement rate {ir:.0%} > 80%: from now on, probe boundaries "
                         f"earlier (failure-probe after {max(2, self.s.failure_probe_after - 1)} successes).")
        if st.plateau:
            new_c = 2.0 if new_c is None else new_c
            rules.append(f"Block {blk.block}: R² plateau (last {st.plateau_window} runs within "
                         f"±{st.plateau_nines:g} nines): forced branching when stuck; ucb_c raised to 2.0.")
        if st.max_same_param_run > 4:
            rules.append(f"Block {blk.block}: {st.max_same_param_run} consecutive mutations of one parameter: "
                         f"switch dimension after 4.")
        if st.stochastic:
            rules.append(f"Block {blk.block}: same config re-run spread {st.rerun_spread:.3f} > 0.1: field "
                         f"{blk.field} is stochastically unstable at these settings.")
        return "\n".join(f"- {r}" for r in rules), new_c

    def _summary(self, view: StudyView, best: NodeState | None) -> str:
        st, blk = view.stats, view.block
        inr = str(view.value(None, "inr_type") or "?")
        parts = [(f"Block {blk.block} ({blk.field}, {inr}, {blk.n_training_frames} frames): {st.n_nodes} runs, "
                  f"{st.n_ok} ok, {st.n_failed} failed.")]
        if best is not None:
            ch = ", ".join(f"{k}={v}" for k, v in sorted(as_dict(best.overrides).items())
                           if k not in BLOCK_KEYS)
            beaten = beaten_by(best.metrics)
            parts.append(f"Best R² {format_r2(best.r2)} (node {best.node_id}, {grade(best)}; "
                         f"{ch or 'the block base config'})" + (f", {beaten}." if beaten else "."))
        rates = []
        if st.branching_rate is not None:
            rates.append(f"branching {st.branching_rate:.0%}")
        if st.improvement_rate is not None:
            rates.append(f"improvement {st.improvement_rate:.0%}")
        if rates:
            parts.append("Search: " + ", ".join(rates) + ".")
        return " ".join(parts)

    def _hypothesis(self, view, best, next_field, next_frames, next_overrides, est) -> str:
        blk = view.block
        start = f"node {best.node_id}'s config" if best is not None else "the previous base config"
        if next_field != blk.field:
            h = (f"{next_field} at {next_frames} frames, starting from {start}: tests whether the best {blk.field} "
                 f"settings transfer to {next_field}.")
        else:
            h = (f"{blk.field} at {next_frames} frames (was {blk.n_training_frames}), starting from {start}"
                 + (f" with train.total_steps={next_overrides['train.total_steps']} (same steps per frame)"
                    if "train.total_steps" in next_overrides else "")
                 + ": expect similar R² if capacity suffices; re-tune omega"
                   " (design document: more frames, lower optimum).")
        if est:
            h += " Principles to re-test: " + "; ".join(e.verb() for e in est[:3]) + "."
        return h


def _same_but_seed(a: NodeState, b: NodeState) -> bool:
    strip = lambda n: sorted(o for o in n.overrides if not o.startswith("seed="))
    return strip(a) == strip(b)


def raise_no_candidate(view: StudyView) -> None:
    from mpm_inr.errors import StudyError

    raise StudyError(f"heuristic policy: no untried valid config is left in block {view.block.block} (every "
                     f"mutation of every node was run or failed); widen the ranges or the mutable params")


def _parent(view: StudyView, n: NodeState) -> NodeState | None:
    if n.parent_id is None:
        return None
    try:
        return view.node(n.parent_id)
    except KeyError:
        return None


def observe(view: StudyView) -> str:
    """What the latest round showed, derived from its metrics (compared with each node's parent)."""
    done = [n for n in view.nodes if n.launched and n.finished]
    if not done:
        return ""
    last_round = max((n.round or 0) for n in done)
    lines = []
    for n in sorted((n for n in done if (n.round or 0) == last_round), key=lambda n: n.node_id):
        lines.append(describe_result(n, _parent(view, n)))
    return " ".join(lines)


def build(cfg: Mapping[str, Any], ctx) -> HeuristicPolicy:
    return HeuristicPolicy(Settings.from_config(cfg, ctx.config, int(cfg.get("seed", ctx.seed))))


__all__ = ["HeuristicPolicy", "Settings", "build", "node_regime", "observe"]
