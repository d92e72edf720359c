"""The diff parser and the guardrails: what a code modification may touch, import and change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.codemod.diffparse import DiffError, parse
from agent.codemod.guard import GuardError, check_patches, check_sources
from agent.codemod.paths import glob_regex
from agent.codemod.settings import CodeModSettings
from mpm_inr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "claude" / "code_diff" / "decisions.json"
S = CodeModSettings(enabled=True)


def recorded_diffs() -> list[str]:
    return [step["result"][0]["code_diff"] for step in json.loads(FIXTURE.read_text())]


def patch(path: str, added: list[str], removed: list[str] = (), *, header: str = "", new: bool = False,
          context: str = "x = 1") -> str:
    """A small git diff of `path` (a new file when `new`)."""
    old = "/dev/null" if new else f"a/{path}"
    body = [f"@@ -{0 if new else 1},{0 if new else 1 + len(removed)} +1,{len(added) + (0 if new else 1)} @@"]
    if not new:
        body.append(f" {context}")
    body += [f"-{ln}" for ln in removed] + [f"+{ln}" for ln in added]
    mode = "new file mode 100644\n" if new else ""
    return f"diff --git a/{path} b/{path}\n{header}{mode}--- {old}\n+++ b/{path}\n" + "\n".join(body) + "\n"


def refused(diff: str, settings: CodeModSettings = S) -> str:
    with pytest.raises((DiffError, GuardError)) as e:
        check_patches(parse(diff), settings)
    return str(e.value)


# ------------------------------------------------------------------------------------------------ parser


def test_recorded_claude_diffs_parse_to_one_modification_each():
    good, broken = (parse(d) for d in recorded_diffs())
    assert len(good) == 1 and good[0].kind == "modify" and good[0].path == "mpm_inr/training/optim.py"
    assert (good[0].n_added, good[0].n_removed) == (4, 0)
    assert (broken[0].n_added, broken[0].n_removed) == (1, 1)
    check_patches(good, S)
    check_patches(broken, S)  # a syntax error is the smoke test's job, not the guardrails'


def test_added_lines_that_look_like_headers_stay_content():
    d = ("--- a/mpm_inr/models/siren.py\n+++ b/mpm_inr/models/siren.py\n@@ -1,1 +1,3 @@\n x = 1\n"
         "+++ b/agent/loop/explorer.py\n+--- a/conf/train.yaml\n")
    (fp,) = parse(d)
    assert fp.path == "mpm_inr/models/siren.py" and fp.hunks[0].added == ["++ b/agent/loop/explorer.py",
                                                                          "--- a/conf/train.yaml"]


@pytest.mark.parametrize("diff, msg", [
    ("", "empty"),
    ("Here is my change:\n" + patch("mpm_inr/models/siren.py", ["y = 2"]), "outside a file patch"),
    ('diff --git "a/mpm_inr/models/s n.py" "b/mpm_inr/models/s n.py"\n', "quoted path"),
    ("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "'..'"),
    ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "prefix"),
    ("--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n", "git metadata"),
    ("--- a/mpm_inr/models/siren.py\n+++ b/mpm_inr/models/siren.py\n@@ -1,3 +1,3 @@\n-a\n+b\n", "ends early"),
    ("--- a/mpm_inr/models/siren.py\n+++ b/mpm_inr/models/siren.py\n@@ -1 +1 @@\n-a\n+b\n+c\n",
     "outside a file patch"),
    ("--- a/mpm_inr/models/siren.py\n+++ b/mpm_inr/models/siren.py\n", "no hunk"),
    (("diff --git a/mpm_inr/models/siren.py b/mpm_inr/models/siren.py\n--- a/mpm_inr/models/siren.py\n"
      "+++ b/agent/loop/explorer.py\n@@ -1 +1 @@\n-a\n+b\n"), "do not match"),
    (patch("mpm_inr/models/siren.py", ["y"]) + patch("mpm_inr/models/siren.py", ["z"]), "patched twice"),
    ("diff --git a/mpm_inr/models/siren.py b/mpm_inr/models/siren.py\nweird header\n", "unknown extended header"),
    ("--- a/mpm_inr/models/siren.py\n+++ b/mpm_inr/models/siren.py\n@@ -1 +1 @@\n-a\x00\n+b\n", "NUL"),
])
def test_malformed_or_sneaky_diffs_are_refused_by_the_parser(diff, msg):
    with pytest.raises(DiffError, match=None) as e:
        parse(diff)
    assert msg in str(e.value)


# ------------------------------------------------------------------------------------------------ paths


@pytest.mark.parametrize("path, msg", [
    ("mpm_inr/metrics/regression.py", "metrics code"),
    ("mpm_inr/data/window.py", "data-loading code"),
    ("mpm_inr/training/run.py", "evaluation code"),
    ("mpm_inr/training/outputs.py", "metrics.json"),
    ("mpm_inr/training/datamodule.py", "data-loading"),
    ("agent/loop/explorer.py", "the agent itself"),
    ("conf/train.yaml", "configs"),
    ("train.py", "entry point"),
    ("mpm_inr/viz/field_plot.py", "outside the allow-list"),
    ("mpm_inr/training/sampler.py", "outside the allow-list"),
    ("mpm_inr/models/sub/deep.py", "outside the allow-list"),  # '*' does not cross '/'
])
def test_paths_outside_the_allow_list_or_protected_are_refused(path, msg):
    assert msg in refused(patch(path, ["y = 2"]))


def test_allowed_paths_and_file_kinds():
    check_patches(parse(patch("mpm_inr/models/siren.py", ["y = 2"])), S)
    check_patches(parse(patch("mpm_inr/training/optim.py", ["y = 2"])), S)
    check_patches(parse(patch("mpm_inr/models/fourier.py", ["y = 2"], new=True)), S)  # new module in the list
    assert "outside the allow-list" in refused(patch("mpm_inr/training/new.py", ["y"], new=True))
    delete = ("diff --git a/mpm_inr/training/run.py b/mpm_inr/training/run.py\ndeleted file mode 100644\n"
              "--- a/mpm_inr/training/run.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n")
    assert "evaluation code" in refused(delete)
    rename = ("diff --git a/mpm_inr/models/siren.py b/mpm_inr/data/siren.py\nsimilarity index 100%\n"
              "rename from mpm_inr/models/siren.py\nrename to mpm_inr/data/siren.py\n")
    assert "data-loading" in refused(rename)
    link = patch("mpm_inr/models/link.py", ["../../agent/loop/explorer.py"], new=True).replace("100644", "120000")
    assert "symlink" in refused(link)
    mode = ("diff --git a/mpm_inr/models/siren.py b/mpm_inr/models/siren.py\nold mode 100644\nnew mode 100755\n")
    assert "mode" in refused(mode)
    binary = ("diff --git a/mpm_inr/models/w.py b/mpm_inr/models/w.py\nnew file mode 100644\nindex 0000000..e69de29\n"
              "GIT binary patch\nliteral 4\nLcmZ?l\n\nliteral 0\nHcmV?d00001\n")
    assert "binary" in refused(binary)
    small = CodeModSettings(enabled=True, max_changed_lines=3)
    check_patches(parse(patch("mpm_inr/models/siren.py", ["a", "b", "c"])), small)
    assert "changes 4 lines" in refused(patch("mpm_inr/models/siren.py", ["a", "b", "c", "d"]), small)


# ------------------------------------------------------------------------------------------------ imports


@pytest.mark.parametrize("line, msg", [
    ("import os", "process / OS access"), ("import subprocess", "process"), ("import socket", "network"),
    ("import shutil", "process"), ("import urllib.request", "network"), ("import requests", "network"),
    ("from http import client", "network"), ("import httpx", "network"), ("import ftplib", "network"),
    ("import smtplib", "network"), ("import asyncio", "network"), ("from importlib import import_module", "dynamic"),
    ("    from os import path as p", "process"), ("import math, os", "process"), ("from torch import hub", "network"),
    ("from torch.utils import cpp_extension", "network"), ("import numpy as np", "metrics / data"),
    ("from mpm_inr.metrics import regression", "metrics"), ("from mpm_inr.data.window import FieldWindow", "data"),
    ("import yaml", "not in codemod.allowed_imports"), ("x = __import__('os')", "dynamic code"),
    ("y = eval('1')", "dynamic code"), ("exec(code)", "dynamic code"),
])
def test_added_imports_and_dynamic_code_are_refused(line, msg):
    assert msg in refused(patch("mpm_inr/models/siren.py", [line]))


def test_allowed_imports_pass():
    ok = ["import math", "from torch import nn", "import torch.nn.functional as F", "from typing import Any",
          "from mpm_inr.models.context import NetworkContext", "from __future__ import annotations"]
    check_patches(parse(patch("mpm_inr/models/siren.py", ok)), S)
    loose = CodeModSettings(enabled=True, allowed_imports=("os", "socket", "math"))  # config cannot open these
    assert "process / OS access" in refused(patch("mpm_inr/models/siren.py", ["import os"]), loose)
    assert "not in codemod.allowed_imports" in refused(patch("mpm_inr/models/siren.py", ["import torch"]), loose)


# ------------------------------------------------------------------------------------------------ sources


MODULE = (REPO / "mpm_inr" / "training" / "module.py").read_text()
SIREN = (REPO / "mpm_inr" / "models" / "siren.py").read_text()


def changed(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1
    return text.replace(old, new)


def test_the_shared_evaluation_path_of_the_registry_is_protected():
    registry = (REPO / "mpm_inr" / "models" / "registry.py").read_text()
    cheat = changed(registry, "        return out.view(frames.numel(), n_particles, -1)\n",
                    "        return 0.0 * out.view(frames.numel(), n_particles, -1)\n")
    with pytest.raises(GuardError) as e:
        check_sources("mpm_inr/models/registry.py", registry, cheat, S)
    assert "InrType.predict_frames" in str(e.value)
    assert "mpm_inr/codec" in refused(patch("mpm_inr/codec/encode.py", ["x = 1"]))


@pytest.mark.parametrize("old, new, msg", [
    ("        return self.inr.query(self.network, self.source, frame_idx, particle_idx)\n",
     "        return self.targets[frame_idx, particle_idx]\n", "INRModule.forward"),
    ("        return self.inr.predict_frames(self.network, self.source, frames.to(self.device), chunk)\n",
     "        return self.targets[frames].to(self.device)\n", "INRModule.predict_frames"),
    ("        return float(acc.r2_tensor())\n", "        return 1.0\n", "INRModule.estimate_r2"),
    ("        self.train_seconds = time.perf_counter() - self._started\n        crossed",
     "        self.train_seconds = 0.001\n        crossed", "train_seconds"),
    ("        return nn.functional.mse_loss(pred, target)\n",
     "        torch.save(pred, 'leak.pt')\n        return nn.functional.mse_loss(pred, target)\n", "'save'"),
    ("        return nn.functional.mse_loss(pred, target)\n",
     "        open('/tmp/x', 'w')\n        return nn.functional.mse_loss(pred, target)\n", "'open'"),
    ("        return nn.functional.mse_loss(pred, target)\n",
     "        getattr(torch, 'lo' + 'ad')\n        return nn.functional.mse_loss(pred, target)\n", "getattr"),
    ("        return nn.functional.mse_loss(pred, target)\n",
     "        m = 'subprocess'\n        return nn.functional.mse_loss(pred, target)\n", "'subprocess'"),
    ("            opt.step()\n",  # memorising the ground truth into the network, to look it up at evaluation
     "            opt.step()\n            self.network.cheat = self.targets.clone()\n", "'targets'"),
    ("            opt.step()\n", "            opt.step()\n            w = self.trainer.datamodule\n", "'datamodule'"),
    ("            opt.step()\n", "            opt.step()\n            torch.ops.load_library('x.so')\n",
     "'load_library'"),
    ("            opt.step()\n", "            opt.step()\n            ().__class__.__base__.__subclasses__()\n",
     "'__base__'"),
    ("            opt.step()\n",
     ("            opt.step()\n            try:\n                1 / 0\n            except ZeroDivisionError as e:\n"
      "                e.__traceback__.tb_frame.f_back\n"), "introspection"),
])
def test_source_checks_protect_the_evaluation_path_and_refuse_hidden_access(old, new, msg):
    with pytest.raises(GuardError) as e:
        check_sources("mpm_inr/training/module.py", MODULE, changed(MODULE, old, new), S)
    assert msg in str(e.value)


def test_source_checks_pass_a_training_step_change_and_catch_relative_imports():
    check_sources("mpm_inr/training/module.py", MODULE,
                  changed(MODULE, "return nn.functional.mse_loss(pred, target)",
                          "return nn.functional.smooth_l1_loss(pred, target, beta=0.1)"), S)
    check_sources("mpm_inr/models/siren.py", SIREN, SIREN + "\n\ndef extra(x):\n    return torch.sin(x)\n", S)
    check_sources("mpm_inr/models/siren.py", SIREN, SIREN + "\ndef broken(:\n", S)  # unparsable: smoke's job
    with pytest.raises(GuardError, match="mpm_inr.data"):
        check_sources("mpm_inr/models/siren.py", SIREN, SIREN + "\nfrom ..data import window\n", S)


# ------------------------------------------------------------------------------------------------ settings


def test_settings_refuse_loosening_the_fixed_rules():
    base = {"codemod": {"enabled": True}}
    assert CodeModSettings.from_config(base).allowed("mpm_inr/models/siren.py")
    for bad, msg in [({"allow": ["mpm_inr/metrics/*.py"]}, "metrics code"), ({"allow": ["**"]}, "covers"),
                     ({"allow": ["../x.py"]}, "repository-relative"), ({"protect_first": 2}, ">= 4"),
                     ({"heuristic": {"library": ["rm_rf"]}}, "unknown modification"),
                     ({"smoke": {"overrides": ["hydra.run.dir=/tmp"]}}, "plain key=value"),
                     ({"enabled": "yes"}, "true or false")]:
        with pytest.raises(ConfigError, match=msg):
            CodeModSettings.from_config({"codemod": {"enabled": True, **bad}})
    assert glob_regex("mpm_inr/models/").match("mpm_inr/models/a/b.py")
    assert not glob_regex("mpm_inr/models/*.py").match("mpm_inr/models/a/b.py")
