"""2D MLS-MPM simulator (APIC, quadratic B-splines, fixed-corotated elasticity, snow plasticity).

Public API: `MPMState`, `MPMSimulator`, `GridParams`, `MaterialParams`, `initial_state`, `validate_scenario`,
`physics_params`, `GENERATOR_VERSION` (stored in every dataset's meta.json). Bump it whenever the numbers change,
even at the level of float rounding: the discs collide chaotically, so a reordered sum gives another trajectory by
mid-run, and `ensure_dataset` warns about cached datasets of another version. (Commit 6aad869c changed the
rounding without a bump, so "mpm_inr.sim/1" names two trajectories per seed; "/2" is the one after it.)
`tests/test_dataset.py` pins the fingerprint of a short trajectory per version and platform, and fails when the
numbers change under an unchanged version.
"""

from mpm_inr.sim.material import JELLY, LIQUID, MATERIAL_NAMES, SNOW, MaterialParams
from mpm_inr.sim.scenarios import (
    disc_index,
    initial_state,
    physics_params,
    validate_scenario,
)
from mpm_inr.sim.step import GridParams, MPMSimulator, MPMState, mpm_step

GENERATOR_VERSION = "mpm_inr.sim/2"  # /2: since commit 6aad869c (trig-free SVD projection); /1 was ambiguous

__all__ = [
    "GENERATOR_VERSION",
    "JELLY",
    "LIQUID",
    "MATERIAL_NAMES",
    "SNOW",
    "GridParams",
    "MPMSimulator",
    "MPMState",
    "MaterialParams",
    "disc_index",
    "initial_state",
    "mpm_step",
    "physics_params",
    "validate_scenario",
]
