"""Resuming a bench's compression part: the seeds an interrupted run finished are read back, not trained again.

A whole-simulation seed takes 20-50 minutes on a CPU, and a killed bench (the kernel's OOM killer once ended one in
its last part) used to lose every seed of the field it was in, since a field's table was saved only when all its
seeds had run. The bench now saves after every seed; `--resume` reads that file back and reuses each finished seed
whose numbers mean the same here: the same device, scenario, windows' cap, compare targets and datasets (by
fingerprint). Anything else is refused in one line, before anything trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the result keys a reused seed's numbers depend on, beyond the datasets' fingerprints and the compare targets
SAME_SETTINGS = ("device", "scenario", "long_cap_s", "frames")


class ResumeError(ValueError):
    """A previous result file cannot be resumed from; the message names the file, the mismatch and the way out."""


@dataclass(frozen=True)
class Previous:
    """What a resumed run takes from the earlier file: its compression tables and their seeds' entries."""

    blocks: list[dict[str, Any]] = field(default_factory=list)  # carried into the new file, replaced as fields run
    seeds: dict[tuple[int, int, str], dict[int, dict[str, Any]]] = field(default_factory=dict)

    def finished(self, window: int, holdout_every: int, field_name: str) -> dict[int, dict[str, Any]]:
        """The seeds of one field's table (window, held-out every k) that the earlier run finished, by seed."""
        return self.seeds.get((window, holdout_every, field_name), {})


def previous_results(path: Path, results: dict[str, Any], targets: tuple[float, ...]) -> Previous:
    """The earlier result file at `path` (nothing to reuse if there is none), checked against this run's `results`
    header and compare `targets`."""
    if not path.exists():
        return Previous()
    way_out = "resume with the settings it was measured with, or choose another --out"
    try:
        old = json.loads(path.read_text())
        blocks = list(old["compression"])
        seeds = {(int(block["window"]), int(block["holdout_every"]), str(table["field"])):
                 {int(entry["seed"]): entry for entry in table["seeds"]}
                 for block in blocks for table in block["fields"]}
        listed = {tuple(table["targets"]) for block in blocks for table in block["fields"]}
        datasets = dict(old["datasets"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResumeError(f"--resume: {path} is not a bench result this version can read ({type(err).__name__}); "
                          f"move it away or choose another --out") from None
    for key in SAME_SETTINGS:
        if old.get(key) != results[key]:
            raise ResumeError(f"--resume: {path} was measured with {key}={old.get(key)!r}, this run has "
                              f"{results[key]!r}; {way_out}")
    changed = sorted(seed for seed, print_ in results["datasets"].items() if datasets.get(seed, print_) != print_)
    if changed:
        raise ResumeError(f"--resume: the dataset of seed(s) {', '.join(changed)} changed since {path} was measured "
                          f"(fingerprints differ); {way_out}")
    if listed - {tuple(targets)}:
        raise ResumeError(f"--resume: {path} compared at targets {sorted(set().union(*listed))}, this run at "
                          f"{list(targets)}; {way_out}")
    return Previous(blocks, seeds)
