"""Findings: the design document's rules judged against a study's runs (issue #22).

A rule (`Rule`, all of them in `RULES`) names the runs it is about, the factor under test, what the document claims
and a judge. The engine builds one-factor comparisons: groups of successful runs that share everything but that
factor (the window: field, inr_type, frames, held-out frames; the data seed, unless the rule pools seeds; and the
resolved value of every other key any of them overrides), and scores each value of the factor on the nines scale,
-log10(1 - R²), by the median of its runs (training-seed repeats pooled). With `others="free"` a group shares only
the window and data seed and each value is scored by its best run: for claims about fields, whose tuned configs
differ. The same judge reads held-out R² where every value of a group has it.

Judges (the only per-kind code): `ArgmaxIn(lo, hi)`, `Better(a, b)`, `Below(at, r2)`, `Drop(at, ref, nines)`,
`Falls()`, `Order(values)`; each says what it needs and, on the nines scale, values within `TIE_NINES` of each
other count as equal (the agent's plateau tolerance). A group is "holds", "does not hold" or "untested" (the
judge lacks the values it needs); a finding holds or does not hold when every tested group agrees, is "mixed" when
they disagree and "untested" when no group is tested. Every group lists its runs with their numbers
(agent.reporting.evidence.quote), so each verdict can be checked against the journal.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.reporting.report_data import RunRecord, Study, neglog, num
from agent.study.tree import format_r2

HOLDS, FAILS, UNTESTED, MIXED = "holds", "does not hold", "untested", "mixed"
#: values closer than this on the nines scale are a tie (agent.plateau_nines: 0.999 vs 0.99911 is a tie)
TIE_NINES = 0.05

Value = Any  # a factor's value: a float for numbers, else its string
Scores = Mapping[Value, float]  # value -> nines


def canon(x: Any) -> Value:
    """Numbers as floats (so 20 and 20.0 are one value), anything else as its string; None stays None."""
    if x is None:
        return None
    n = num(x)
    return n if n is not None else str(x)


def show(v: Value) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def r2_text(nines: float) -> str:
    return format_r2(1.0 - 10.0 ** -nines)


def _sort_key(v: Value) -> tuple:
    return (0, v, "") if isinstance(v, float) else (1, 0.0, str(v))


# ------------------------------------------------------------------------------------------------ judges


@dataclass(frozen=True)
class ArgmaxIn:
    """The factor's best value lies in [lo, hi]: some value in the range scores within TIE_NINES of the best.
    Needs a value in the range and one outside it."""

    lo: float
    hi: float
    min_values: int = 2

    def text(self) -> str:
        return f"best value in [{self.lo:g}, {self.hi:g}]" if self.lo != self.hi else f"best value {self.lo:g}"

    def __call__(self, s: Scores) -> tuple[str, str]:
        inside = {v: x for v, x in s.items() if isinstance(v, float) and self.lo <= v <= self.hi}
        if not inside or len(inside) == len(s):
            return UNTESTED, "no value " + ("inside" if not inside else "outside") + " the claimed range was run"
        best = max(s, key=s.__getitem__)
        top = max(inside, key=inside.__getitem__)
        if s[top] >= s[best] - TIE_NINES:
            return HOLDS, (f"best {show(best)} (R² {r2_text(s[best])})" if best == top else
                           f"{show(top)} (R² {r2_text(s[top])}) ties the best, {show(best)} (R² {r2_text(s[best])})")
        return FAILS, (f"best {show(best)} (R² {r2_text(s[best])}); best in range {show(top)} (R² "
                       f"{r2_text(s[top])}), {s[best] - s[top]:.2f} nines lower")


@dataclass(frozen=True)
class Better:
    """Value a beats value b by more than TIE_NINES."""

    a: Value
    b: Value
    min_values: int = 2

    def text(self) -> str:
        return f"{show(self.a)} beats {show(self.b)}"

    def __call__(self, s: Scores) -> tuple[str, str]:
        if self.a not in s or self.b not in s:
            return UNTESTED, f"needs both {show(self.a)} and {show(self.b)}"
        d = s[self.a] - s[self.b]
        words = (f"{show(self.a)} R² {r2_text(s[self.a])} vs {show(self.b)} R² {r2_text(s[self.b])} "
                 f"({d:+.2f} nines)")
        return (HOLDS if d > TIE_NINES else FAILS), words


@dataclass(frozen=True)
class Below:
    """The R² at value `at` is below `r2` (one run is enough)."""

    at: Value
    r2: float
    min_values: int = 1

    def text(self) -> str:
        return f"R² at {show(self.at)} < {self.r2:g}"

    def __call__(self, s: Scores) -> tuple[str, str]:
        if self.at not in s:
            return UNTESTED, f"no run at {show(self.at)}"
        return (HOLDS if s[self.at] < neglog(self.r2) else FAILS), f"R² {r2_text(s[self.at])} at {show(self.at)}"


@dataclass(frozen=True)
class Drop:
    """The R² at value `at` is at least `nines` below the R² at value `ref` (a catastrophe, not a dip)."""

    at: Value
    ref: Value
    nines: float
    min_values: int = 2

    def text(self) -> str:
        return f"R² at {show(self.at)} at least {self.nines:g} nine(s) below R² at {show(self.ref)}"

    def __call__(self, s: Scores) -> tuple[str, str]:
        if self.at not in s or self.ref not in s:
            return UNTESTED, f"needs both {show(self.at)} and {show(self.ref)}"
        d = s[self.ref] - s[self.at]
        return (HOLDS if d >= self.nines else FAILS), (
            f"R² {r2_text(s[self.at])} at {show(self.at)} vs {r2_text(s[self.ref])} at {show(self.ref)} "
            + (f"({d:.2f} nines lower)" if d >= 0 else f"({-d:.2f} nines higher)"))


@dataclass(frozen=True)
class Falls:
    """R² at the largest value is more than TIE_NINES below R² at the smallest."""

    min_values: int = 2

    def text(self) -> str:
        return "R² falls as the value grows"

    def __call__(self, s: Scores) -> tuple[str, str]:
        vals = sorted((v for v in s if isinstance(v, float)), key=_sort_key)
        if len(vals) < 2:
            return UNTESTED, "needs two numeric values"
        lo, hi = vals[0], vals[-1]
        path = " → ".join(f"{show(v)}: {r2_text(s[v])}" for v in vals)
        return (HOLDS if s[hi] < s[lo] - TIE_NINES else FAILS), f"R² {path}"


@dataclass(frozen=True)
class Order:
    """The listed values rank in this order (best first): no pair present is inverted by more than TIE_NINES.
    Needs two of them."""

    values: tuple[Value, ...]
    min_values: int = 2

    def text(self) -> str:
        return " > ".join(show(v) for v in self.values)

    def __call__(self, s: Scores) -> tuple[str, str]:
        present = [v for v in self.values if v in s]
        if len(present) < 2:
            return UNTESTED, "needs two of " + ", ".join(show(v) for v in self.values)
        inverted = [(a, b) for i, a in enumerate(present) for b in present[i + 1:] if s[b] > s[a] + TIE_NINES]
        ranking = " > ".join(f"{show(v)} ({r2_text(s[v])})" for v in sorted(present, key=lambda v: -s[v]))
        if inverted:
            return FAILS, f"measured {ranking}; " + ", ".join(f"{show(b)} above {show(a)}" for a, b in inverted)
        return HOLDS, f"measured {ranking}"


Judge = ArgmaxIn | Better | Below | Drop | Falls | Order


# ------------------------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class Rule:
    """One claim of the design document, as data: which runs (`select`: factor -> allowed values), the factor
    under test (`key`), the judge, whether the other settings must be equal (`others="equal"`, the default) or
    are free with each value scored by its best run (`others="free"`), extra resolved keys that must be equal
    (`fixed`), and whether groups pool data seeds (`pool_seeds`)."""

    id: str
    claim: str
    source: str
    key: str
    judge: Judge
    select: Mapping[str, tuple] = field(default_factory=dict)
    others: str = "equal"
    fixed: tuple[str, ...] = ()
    pool_seeds: bool = False
    note: str = ""


_TXY = {"inr_type": ("siren_txy",)}
_PRIOR = "landscape_study.md, Prior Knowledge"
_RESULTS = "reference_agent_loop.md §7"

#: the design document's rules (landscape_study.md "Prior Knowledge", reference_agent_loop.md §7). Layers: the
#: document counts n_layers_nnr_f, the sine layers after the first, so its "3 layers" is model.n_layers=4 (README)
RULES: tuple[Rule, ...] = (
    Rule("omega-F", "F's best ω with siren_txy is ~20", _PRIOR, "model.omega", ArgmaxIn(15, 25),
         {"field": ("F",), **_TXY}),
    Rule("omega-Jp", "Jp's best ω with siren_txy is 15-25", _PRIOR, "model.omega", ArgmaxIn(15, 25),
         {"field": ("Jp",), **_TXY}),
    Rule("omega-C", "C's best ω with siren_txy is ~25", _PRIOR, "model.omega", ArgmaxIn(20, 30),
         {"field": ("C",), **_TXY}),
    Rule("omega-S", "S's best ω with siren_txy is ~50", _PRIOR, "model.omega", ArgmaxIn(40, 60),
         {"field": ("S",), **_TXY}),
    Rule("S-width-1280", "S needs a 1280-wide SIREN (512 and 1024 fit worse)", _PRIOR, "model.hidden_dim",
         ArgmaxIn(1280, 1280), {"field": ("S",), **_TXY}),
    Rule("t-period-2", "data.t_period=2 is catastrophic", _RESULTS, "data.t_period", Drop(2.0, 1.0, 1.0),
         note="the reference suspects its evaluation bug (t divided in training only); here t_period divides t "
              "in training and evaluation alike"),
    Rule("siren_id-fails", "siren_id fails (R² < 0.1)", _RESULTS, "inr_type", Below("siren_id", 0.1)),
    Rule("siren_t-beats-txy", "siren_t beats siren_txy on F, Jp and C at 100 frames", _RESULTS, "inr_type",
         Better("siren_t", "siren_txy"), {"field": ("F", "Jp", "C"), "data.n_training_frames": (100,)}),
    Rule("siren_t-fails-S", "siren_t fails on S (R² < 0.1)", _RESULTS, "inr_type", Below("siren_t", 0.1),
         {"field": ("S",)}),
    Rule("frames-need-steps", "more frames need more steps: at fixed train.total_steps R² falls with frames",
         _PRIOR, "data.n_training_frames", Falls(), fixed=("train.total_steps",)),
    Rule("Jp-C-3-layers", "Jp and C need exactly 3 layers (n_layers_nnr_f 3 = model.n_layers 4)", _PRIOR,
         "model.n_layers", ArgmaxIn(4, 4), {"field": ("Jp", "C"), **_TXY}),
    Rule("field-ranking", "field difficulty: F > Jp > C >> S", _PRIOR, "field", Order(("F", "Jp", "C", "S")),
         others="free", note="each field scored by its best run of the same inr_type, frames and data seed"),
    Rule("S-grad-clip-1", "S needs gradient clipping 1.0", _PRIOR, "train.grad_clip", Better(1.0, 0.0),
         {"field": ("S",), **_TXY}),
)


# ------------------------------------------------------------------------------------------------ engine

#: factors that are run attributes rather than override keys; the window identity of a group
FACTORS: dict[str, Callable[[RunRecord], Any]] = {
    "field": lambda r: r.field, "inr_type": lambda r: r.inr_type, "data.n_training_frames": lambda r: r.frames,
    "data.seed": lambda r: r.data_seed,
}
WINDOW = ("field", "inr_type", "data.n_training_frames", "data.seed")


def factor(run: RunRecord, key: str) -> Value:
    getter = FACTORS.get(key)
    return canon(getter(run) if getter else run.value(key))


@dataclass
class Group:
    """One one-factor comparison: its shared settings and, per value of the factor, its runs."""

    label: str
    values: dict[Value, list[RunRecord]]
    scores: dict[Value, float]
    verdict: str
    reason: str
    heldout_verdict: str | None = None
    heldout_reason: str = ""

    @property
    def node_ids(self) -> list[int]:
        return sorted(r.node_id for rs in self.values.values() for r in rs)


@dataclass
class Finding:
    rule: Rule
    groups: list[Group]

    @property
    def tested(self) -> list[Group]:
        return [g for g in self.groups if g.verdict != UNTESTED]

    @property
    def verdict(self) -> str:
        return combine([g.verdict for g in self.groups])

    @property
    def heldout_verdict(self) -> str:
        return combine([g.heldout_verdict for g in self.groups if g.heldout_verdict is not None])

    @property
    def node_ids(self) -> list[int]:
        return sorted({n for g in self.groups for n in g.node_ids})


def combine(verdicts: Sequence[str]) -> str:
    tested = {v for v in verdicts if v != UNTESTED}
    return UNTESTED if not tested else tested.pop() if len(tested) == 1 else MIXED


def _score(runs: Sequence[RunRecord], metric: Callable[[RunRecord], float | None], best: bool) -> float | None:
    vals = [neglog(v) for v in (metric(r) for r in runs) if v is not None]
    if not vals:
        return None
    return max(vals) if best else statistics.median(vals)


def _selected(rule: Rule, runs: Sequence[RunRecord]) -> list[RunRecord]:
    allowed = {k: {canon(v) for v in vs} for k, vs in rule.select.items()}
    return [r for r in runs if r.ok and factor(r, rule.key) is not None
            and all(factor(r, k) in vs for k, vs in allowed.items())]


def _identity(rule: Rule, run: RunRecord, others: Sequence[str]) -> tuple:
    window = [k for k in WINDOW if k != rule.key and not (k == "data.seed" and rule.pool_seeds)]
    keys = window + list(rule.fixed) + (list(others) if rule.others == "equal" else [])
    return tuple((k, factor(run, k)) for k in keys) + (("held-out every", run.holdout_every),)


def _label(identity: tuple) -> str:
    d = dict(identity)
    head = " ".join(show(d.pop(k)) for k in ("field", "inr_type") if k in d)
    if "data.n_training_frames" in d:
        head += f" {show(d.pop('data.n_training_frames'))} frames"
    if "data.seed" in d:
        head += f", data seed {show(d.pop('data.seed'))}"
    hold = d.pop("held-out every")
    rest = ", ".join(f"{k}={show(v)}" for k, v in sorted(d.items()) if v is not None)
    return head.strip() + (f", every {hold}th frame held out" if hold else "") + (f"; {rest}" if rest else "")


def evaluate(rule: Rule, study: Study) -> Finding:
    """The rule's one-factor comparisons on the study's successful runs, each judged."""
    runs = _selected(rule, study.runs)
    skip = set(WINDOW) | {"seed", rule.key, *rule.fixed}
    others = sorted({k for r in runs for k in _override_keys(r)} - skip)
    buckets: dict[tuple, dict[Value, list[RunRecord]]] = {}
    for r in sorted(runs, key=lambda r: r.node_id):
        buckets.setdefault(_identity(rule, r, others), {}).setdefault(factor(r, rule.key), []).append(r)
    best = rule.others == "free"
    groups = []
    for ident, by_value in sorted(buckets.items(), key=lambda kv: _label(kv[0])):
        values = dict(sorted(by_value.items(), key=lambda kv: _sort_key(kv[0])))
        scores = {v: s for v, rs in values.items() if (s := _score(rs, lambda r: r.r2, best)) is not None}
        verdict, reason = rule.judge(scores)
        if len(values) < rule.judge.min_values or (verdict == UNTESTED and len(values) < 2):
            continue
        group = Group(_label(ident), values, scores, verdict, reason)
        held = {v: _score(rs, lambda r: r.holdout_r2, best) for v, rs in values.items()}
        if all(s is not None for s in held.values()):
            group.heldout_verdict, group.heldout_reason = rule.judge(held)
        groups.append(group)
    return Finding(rule, groups)


def _override_keys(run: RunRecord) -> list[str]:
    return [o.partition("=")[0].lstrip("+~") for o in run.overrides if "=" in o]


def findings(study: Study, rules: Sequence[Rule] = RULES) -> list[Finding]:
    return [evaluate(rule, study) for rule in rules]
