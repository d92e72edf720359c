"""A tiny stand-in for `train.py` (a real Hydra app, no torch) for agent tests and fault injection.

`write_fake_app(dir)` writes `train.py` + `conf/` with the same config groups and keys the agent mutates. The
fake trainer takes milliseconds and writes a Contract-2 `metrics.json` whose R² is a smooth deterministic function
of the config (peaked at lr=1e-4, hidden_dim=256, n_layers=3, omega=30), so policies have a landscape to climb.
Faults are injected with `fake.*` keys: `fake.diverge_above_lr`, `fake.sleep_s`, `fake.crash=raise|exit|kill|hang|hang_hard`,
`fake.no_metrics=true`. `data.seed` (the dataset) changes the R² noise; `outputs.plot=false` writes no field.png.
"""

from __future__ import annotations

from pathlib import Path

from mpm_inr.config.fields import FIELDS

TRAIN_PY = r'''
"""Fake trainer for agent tests (see tests/fakeapp.py)."""
import hashlib, json, math, os, signal, sys, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


def flat(d, p=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, p + k + "."))
        else:
            out[p + k] = v
    return out


def write(run_dir, metrics):
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1))
    os.replace(tmp, run_dir / "metrics.json")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg):
    t0 = time.time()
    c = OmegaConf.to_container(cfg, resolve=True)
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    fake = c["fake"]
    base = {"status": "failed", "error": None, "diverged_step": None, "field": c["field"]["name"],
            "inr_type": c["model"]["name"], "n_training_frames": c["data"]["n_training_frames"],
            "overrides": list(hc.overrides.task), "config": flat({k: c[k] for k in ("model", "optimizer", "data", "train")}),
            "study": c["study"], "wandb_run_id": None, "device": "cpu", "torch_version": "none", "dataset": "fake"}
    if fake["sleep_s"]:
        time.sleep(float(fake["sleep_s"]))
    crash = fake["crash"]
    if crash == "raise":
        raise RuntimeError("fake trainer: injected exception")
    if crash == "exit":
        sys.exit(3)
    if crash == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if crash == "hang":
        while True:
            time.sleep(0.05)
    if crash == "hang_hard":  # ignores the job guard's SIGALRM: only the agent's round deadline stops it
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            time.sleep(0.05)
    if fake["no_metrics"]:
        return 0.0
    lr, h, L, w = c["optimizer"]["lr"], c["model"]["hidden_dim"], c["model"]["n_layers"], c["model"]["omega"]
    if lr > fake["diverge_above_lr"]:
        write(run_dir, {**base, "status": "diverged", "diverged_step": 7, "error": "loss became NaN at step 7"})
        return float("nan")
    steps, frames = c["train"]["total_steps"], c["data"]["n_training_frames"]
    field_k = {"Jp": 1.0, "F": 0.5, "S": 3.0, "C": 1.5}[c["field"]["name"]]
    loss = (0.02 * math.log2(lr / 1e-4) ** 2 + 0.01 * math.log2(h / 256) ** 2 + 0.01 * (L - 3) ** 2
            + 1e-5 * (w - 30) ** 2 + 0.02 * math.log2(frames / 48) ** 2 / 10) * field_k
    loss += 0.05 / math.sqrt(max(steps, 1) / 100)
    digest = hashlib.sha256(json.dumps(base["config"], sort_keys=True).encode() + str(c["seed"]).encode())
    noise = (int(digest.hexdigest()[:8], 16) / 0xFFFFFFFF - 0.5) * 1e-4
    r2 = 1.0 - loss / (1.0 + loss) + noise
    comps = len(c["field"]["components"])
    params = L * h * h + h * (3 + comps)
    n_values = frames * 1000 * comps
    m = {**base, "status": "ok", "final_r2": r2, "final_mse": loss * 1e-3, "r2_per_component": [r2] * comps,
         "r2_min_component": r2, "pearson_r2": min(1.0, r2 + 1e-5), "slope": 1.0 - loss / 10, "intercept": 0.0,
         "total_params": params, "n_values": n_values, "compression_ratio": n_values / params,
         "training_time": steps * h * 1e-6, "wall_time": time.time() - t0, "steps": steps,
         "steps_per_s": steps / max(steps * h * 1e-6, 1e-9), "ssim": [min(1.0, r2 + 0.001)] * comps,
         "ssim_mean": min(1.0, r2 + 0.001), "kinograph_r2": r2, "kinograph_ssim": min(1.0, r2 + 0.002),
         "holdout_r2": None, "holdout_mse": None, "holdout_frames": None,
         "svd": {"rank_for_0.995": 3, "r2_rank": {"1": 0.9}}}
    if c["outputs"]["plot"]:
        (run_dir / "field.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write(run_dir, m)
    return r2


if __name__ == "__main__":
    main()
'''

TRAIN_YAML = """\
defaults:
  - _self_
  - field: Jp
  - inr_type: siren_txy
  - optimizer: adam
  - scheduler: none
  - logger: none
seed: 0
data:
  n_training_frames: 48
  xy_period: 1.0
  t_period: 1.0
  root: data
  seed: 0
train:
  total_steps: 100
  batch_size: 1
  grad_clip: 0.0
  loss: mse
  max_time_s: null
outputs:
  plot: true
study:
  name: null
  node_id: null
  parent_id: null
  block: null
  iteration: null
  strategy: null
fake:
  diverge_above_lr: 0.0005
  sleep_s: 0
  crash: none
  no_metrics: false
hydra:
  job:
    chdir: false
"""

GROUPS = {
    **{f"field/{f.name}.yaml": f"name: {f.name}\ncomponents: [{', '.join(f.components)}]\n" for f in FIELDS.values()},
    "inr_type/siren_txy.yaml": "# @package model\nname: siren_txy\nhidden_dim: 256\nn_layers: 3\nomega: 30.0\n"
                               "learn_omega: false\n",
    "inr_type/siren_t.yaml": "# @package model\nname: siren_t\nhidden_dim: 256\nn_layers: 3\nomega: 30.0\n"
                             "learn_omega: false\n",
    "optimizer/adam.yaml": "name: adam\nlr: 1.0e-4\nomega_lr: 1.0e-4\n",
    "optimizer/adamw.yaml": "name: adamw\nlr: 1.0e-4\nomega_lr: 1.0e-4\n",
    "scheduler/none.yaml": "name: none\n",
    "scheduler/cosine.yaml": "name: cosine\n",
    "logger/none.yaml": "name: none\n",
}


def write_fake_app(root: str | Path) -> Path:
    """Write the fake trainer into `root` (train.py + conf/) and return `root`."""
    root = Path(root)
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN_PY.lstrip())
    (root / "conf" / "train.yaml").write_text(TRAIN_YAML)
    for rel, text in GROUPS.items():
        p = root / "conf" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


# ------------------------------------------------------------------------------------------ synthetic journals

FAKE_DEFAULTS = {"optimizer.lr": 1e-4, "model.hidden_dim": 256, "model.n_layers": 3, "model.omega": 30.0,
                 "train.total_steps": 1000, "data.t_period": 1.0, "data.xy_period": 1.0, "inr_type": "siren_txy",
                 "seed": 0, "train.batch_size": 1}


class SyntheticStudy:
    """Writes a study journal by hand (no training) for tests of the tree, renderers and policies."""

    def __init__(self, study_dir: str | Path, name: str = "syn", *, n_iter_block: int = 12, field: str = "Jp",
                 frames: int = 100, ucb_c: float = 1.414, config: dict | None = None):
        from agent.study.journal import Journal

        self.dir = Path(study_dir)
        self.name = name
        self.journal = Journal(self.dir)
        self.n_iter_block = n_iter_block
        self.cfg = {"name": name, "field": field, "n_training_frames": frames, "n_blocks": 4,
                    "n_iter_block": n_iter_block, "batch": 1, "ucb_c": ucb_c, "seed": 0, "train_overrides": [],
                    "policy": {"name": "heuristic"}, "launcher": {"name": "basic"}, "inr_type": "siren_txy",
                    "agent": {"min_compression": 1.0}, **(config or {})}
        self.t = 1_700_000_000.0
        self.iteration = 0
        self.node_id = 0
        self.block = 0
        self._emit({"event": "study_start", "name": name, "schema": 1, "config": self.cfg,
                    "instructions": f"# Instructions: study `{name}` (version 1)\n"})
        self.start_block(field, frames, ucb_c=ucb_c)

    def _emit(self, ev: dict) -> None:
        self.t += 1.0
        self.journal.append({**ev, "t": self.t})

    def start_block(self, field: str, frames: int, *, base: dict | None = None, ucb_c: float = 1.414,
                    hypothesis: str = "") -> None:
        from agent.runs.overrides import Validator

        self.block += 1
        ov = Validator().normalise({"field": field, "data.n_training_frames": frames, **(base or {})})
        self._emit({"event": "block_start", "block": self.block, "field": field, "n_training_frames": frames,
                    "base_overrides": ov, "ucb_c": ucb_c, "n_iter_block": self.n_iter_block,
                    "first_iteration": self.iteration + 1, "hypothesis": hypothesis or f"block {self.block}"})

    def add(self, parent: int | None, changes: dict | None = None, *, status: str = "ok", r2: float = 0.99,
            strategy: str = "exploit", metrics: dict | None = None, finish: bool = True,
            run_dir: str | None = None) -> int:
        """Plan (+ launch + finish) one node; returns its id."""
        from agent.runs.overrides import Validator, config_hash, diff, merge
        from agent.study.state import fold

        st = fold(self.journal.read())
        base = st.nodes[parent].overrides if parent is not None else st.current_block.base_overrides
        full = merge(base, Validator().normalise(changes or {}))
        delta = {k: [Validator().canon(k, FAKE_DEFAULTS.get(k) if a is None else a), b]
                 for k, (a, b) in diff(base, full).items()}
        self.iteration += 1
        self.node_id += 1
        nid = self.node_id
        mutation = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in delta.items()) or "none"
        self._emit({"event": "planned", "node_id": nid, "parent_id": parent, "block": self.block,
                    "iteration": self.iteration, "round": self.iteration, "slot": 0, "role": "auto",
                    "strategy": strategy, "overrides": full, "changes": delta, "mutation": mutation,
                    "rationale": "synthetic", "config_hash": config_hash(full), "policy": "heuristic"})
        rd = run_dir or str(self.dir / "runs" / f"round_{self.iteration:04d}" / f"node_{nid:04d}")
        self._emit({"event": "launched", "round": self.iteration, "node_ids": [nid], "run_dirs": {str(nid): rd},
                    "pid": 0, "pgid": 0, "token": "synthetic", "attempt": 1, "launcher": "basic"})
        if finish:
            self.finish(nid, status=status, r2=r2, metrics=metrics, overrides=full)
        return nid

    def finish(self, nid: int, *, status: str = "ok", r2: float = 0.99, metrics: dict | None = None,
               overrides: list | None = None) -> None:
        from agent.runs.overrides import as_dict

        ov = {**FAKE_DEFAULTS, **as_dict(overrides or [])}
        m = {"status": status, "field": ov.get("field", "Jp"), "inr_type": ov.get("inr_type"),
             "n_training_frames": int(ov.get("data.n_training_frames", 100)),
             "config": {k: v for k, v in ov.items() if "." in k}}
        if status == "ok":
            m.update(final_r2=r2, final_mse=(1 - r2) * 1e-3, slope=1.0 - (1 - r2) / 2, r2_min_component=r2,
                     total_params=10000, compression_ratio=100.0, training_time=60.0, ssim=[min(1.0, r2)],
                     kinograph_ssim=min(1.0, r2))
        else:
            m.update(error=f"synthetic {status}")
        m.update(metrics or {})
        self._emit({"event": "finished", "node_id": nid, "status": status, "error": m.get("error"),
                    "metrics": m, "run_dir": None})

    def end_block(self, decision: dict | None = None, stats: dict | None = None) -> None:
        self._emit({"event": "block_end", "block": self.block, "decision": decision or {
            "next_field": "F", "next_n_training_frames": 100, "instruction_edits": "", "summary": "synthetic"},
            "stats": stats or {}})

    def state(self):
        from agent.study.state import fold

        return fold(self.journal.read())

    def view(self, *, policy_cfg: dict | None = None, rejections=()):
        from agent.loop.view import build_view
        from agent.runs.overrides import Validator, as_dict

        def resolver(overrides, key):
            return as_dict(overrides).get(key, FAKE_DEFAULTS.get(key))

        cfg = {**self.cfg, "policy": {"name": "heuristic", **(policy_cfg or {})}}
        return build_view(self.state(), cfg, Validator(progression=self.cfg.get("frames_progression")), self.dir,
                          resolver=resolver, rejections=rejections)
