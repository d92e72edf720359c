"""The quantised truncated SVD (svd_baseline) as a real file: our container, its own kind, its own decoder.

The rival is measured as the file it would be, in the container our files use (format: header, checksum, the
metadata deflated against the version's dictionary, which knows this kind's keys from format 11, and one LZMA
payload of byte planes), so the two are compared on their arrays and what a decoder needs to read them. Until
format 11 the rival was sized as its payload plus an assumed 32-byte header, where our files paid their real
container (68-79 bytes on a 100-frame Jp file).

A file of kind "svd" holds, besides the window section (window_meta.window_section):

    encoding.basis    U_kᵀ (k, T_fit) as quantise_tensor stores it: per-direction integers and scales, or floats
    encoding.codes    the integer coefficients (k, N·C), or (N·C, k) with encoding.transposed (particle-major)
    encoding.step     float32: a coefficient is its integer times the step
    encoding.centre   (C,) float32, added back per component
    encoding.interpolation   how U is carried between the fitted frames ("cubic"; linear where absent)

and decodes to X(t) = U(t) · (codes · step) + centre, U(t) interpolated from the rows of the fitted frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpm_inr.codec import format
from mpm_inr.codec.quantise import dequantise_tensor, pack_array, unpack_array
from mpm_inr.codec.window_meta import WindowFrames, held_out_mask, window_offsets
from mpm_inr.metrics.interpolate import METHODS as INTERPOLATIONS
from mpm_inr.metrics.interpolate import interpolate

KIND = "svd"
LINEAR = INTERPOLATIONS[0]


@dataclass(frozen=True)
class SVDParts:
    """What a file of the quantised SVD stores: U_kᵀ as quantise_tensor stores it, the integer coefficients
    (k, N·C), their step, the centre, and how U is interpolated between the frames it was fitted on."""

    stored_u: np.ndarray | tuple[np.ndarray, np.ndarray]
    ints: np.ndarray
    step: float
    centre: np.ndarray
    interpolation: str = LINEAR

    def contents(self, window: dict[str, Any], transposed: bool) -> tuple[dict[str, Any], dict[str, bytes]]:
        """(metadata, blobs) of the file, the coefficients direction-major or, `transposed`, particle-major."""
        temporal = self.stored_u if isinstance(self.stored_u, tuple) else (self.stored_u,)
        blobs: dict[str, bytes] = {}
        blobs["basis"], basis_spec = pack_array(temporal[0])
        if len(temporal) > 1:
            blobs["basis/scale"], basis_spec["scale"] = pack_array(temporal[1])
        blobs["codes"], codes_spec = pack_array(self.ints.T if transposed else self.ints)
        encoding: dict[str, Any] = {"basis": basis_spec, "codes": codes_spec, "step": _float32(self.step),
                                    "centre": [_float32(v) for v in self.centre]}
        if transposed:
            encoding["transposed"] = True
        return interpolated({"kind": KIND, "window": window, "encoding": encoding}, self.interpolation), blobs

    def file_bytes(self, window: dict[str, Any], transposed: bool, screen: bool = False) -> int:
        """The file's bytes in one layout: exact, or with the payload's fast stand-in (format.screen_size) that
        candidates are ranked by."""
        meta, blobs = self.contents(window, transposed)
        data = format.screen_size(blobs) if screen else len(format.payload(blobs))
        return format.file_bytes(len(format.meta_blob(meta)), data)

    def layout_bytes(self, window: dict[str, Any], screen: bool = False) -> tuple[int, int]:
        """The file's bytes direction-major (each direction's integers back to back, as our codes are stored)
        and particle-major (each particle-component's k integers together). Both are compressed for real
        where it counts: direction-major was up to 12 % smaller (Jp and S at R² 0.999, 100 frames),
        particle-major up to 1 % (C), and the fast screen ranks the two layouts of one file wrongly by about
        that 1 % (C, 100 frames, seed 0, R² 0.995)."""
        return self.file_bytes(window, False, screen), self.file_bytes(window, True, screen)

    def write(self, path: Any, window: dict[str, Any]) -> int:
        """The file in the layout that packs smaller, written atomically; its bytes on disk."""
        by_direction, by_particle = self.layout_bytes(window)
        return format.write(path, *self.contents(window, by_particle < by_direction))


def interpolated(meta: dict[str, Any], method: str) -> dict[str, Any]:
    """A file's metadata naming `method` as its interpolation (linear by its absence): a search sizes one file's
    metadata for either without packing its arrays again."""
    encoding = {key: value for key, value in meta["encoding"].items() if key != "interpolation"}
    if method != LINEAR:
        encoding["interpolation"] = method
    return {**meta, "encoding": encoding}


def _float32(value: float) -> float:
    """A float32 as the shortest decimal that reads back to it: the decoder reads it as float32."""
    return float(str(np.float32(value)))


@dataclass
class SVDModel(WindowFrames):
    """A decoded file of the quantised SVD: U at its fitted frames (WindowFrames.train_frames), interpolated
    between them."""

    meta: dict[str, Any]
    temporal: np.ndarray  # (T_fit, k) float64, U at the frames the file was fitted on
    coefficients: np.ndarray  # (k, N·C) float64, codes · step
    centre: np.ndarray  # (C,) float64

    def predict(self, frames: Sequence[float] | np.ndarray) -> np.ndarray:
        """(len(frames), N, C) float32 in original units at absolute (possibly fractional) frame numbers."""
        win = self.meta["window"]
        offsets = window_offsets(win, frames)
        method = self.meta["encoding"].get("interpolation", LINEAR)
        temporal = interpolate(self.train_frames.astype(np.float64), self.temporal, offsets, method)
        flat = temporal @ self.coefficients
        return (flat.reshape(len(offsets), win["n_particles"], win["n_components"]) + self.centre).astype(np.float32)


def from_container(box: format.Container) -> SVDModel:
    """A parsed file of kind "svd" as its decoder, or one CodecError line where its parts do not fit together."""
    meta, blobs = box.meta, box.blobs
    win, encoding = meta["window"], meta["encoding"]
    try:
        basis_spec = encoding["basis"]
        basis = unpack_array(blobs["basis"], basis_spec)
        stored = (basis, unpack_array(blobs["basis/scale"], basis_spec["scale"])) if "scale" in basis_spec else basis
        temporal = dequantise_tensor(stored).T.astype(np.float64)  # (T_fit, k)
        codes = unpack_array(blobs["codes"], encoding["codes"]).astype(np.float64)
        codes = codes.T if encoding.get("transposed") else codes
        step = float(np.float32(encoding["step"]))
        centre = np.asarray(encoding["centre"], dtype=np.float32).astype(np.float64)
        method = encoding.get("interpolation", LINEAR)
    except (KeyError, TypeError, ValueError):
        raise format.CodecError("the file's quantised-SVD encoding lacks a part or holds one of the wrong type; it "
                                "is inconsistent, encode it again") from None
    n_fit = int((~held_out_mask(win)).sum())
    n_values = win["n_particles"] * win["n_components"]
    if (temporal.shape[0] != n_fit or codes.shape != (temporal.shape[1], n_values)
            or centre.shape != (win["n_components"],) or method not in INTERPOLATIONS):
        raise format.CodecError(f"the file's quantised SVD (basis {temporal.shape}, codes {codes.shape}, centre "
                                f"{centre.shape}, interpolation {method!r}) does not fit its window of {n_fit} "
                                f"fitted frames and {n_values} values; it is inconsistent, encode it again")
    return SVDModel(meta, temporal, codes * step, centre)
