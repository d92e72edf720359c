"""The MPM fields a run can fit: declared once here, read by the data window, conf/field/*.yaml (tested equal)
and the agent (its field rotation, the Claude tool's enum, the time model's component counts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldSpec:
    """One fittable field of the dataset (Contract 1)."""

    name: str  #: the `field=` option and conf/field/<name>.yaml
    array: str  #: the dataset array it is read from (<array>.npy)
    components: tuple[str, ...]  #: component names, row-major for 2x2 tensors; their count is C
    units: str  #: units of the values, as the plots and conf/field/*.yaml state them
    description: str  #: one line for plots and the W&B config

    @property
    def n_components(self) -> int:
        return len(self.components)


#: in the agent's rotation order (Jp first: one component, the cheapest to learn)
FIELDS: dict[str, FieldSpec] = {f.name: f for f in (
    FieldSpec("Jp", "Jp", ("Jp",), "dimensionless", "plastic volume ratio (1 for liquid and jelly)"),
    FieldSpec("F", "F", ("F00", "F01", "F10", "F11"), "dimensionless", "deformation gradient (2x2, row-major)"),
    FieldSpec("S", "S", ("S00", "S01", "S10", "S11"), "stress x time",
              "saved stress, -dt * Kirchhoff stress (2x2, symmetric)"),
    FieldSpec("C", "C", ("C00", "C01", "C10", "C11"), "1/s",
              "APIC affine velocity matrix, C[a][b] ~ dv_a/dx_b (2x2)"),
)}
FIELD_NAMES: tuple[str, ...] = tuple(FIELDS)
