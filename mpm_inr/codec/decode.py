"""A codec file back to numbers: the network rebuilt from its config, its decoded parameters loaded, evaluated at
any time of the window (fractional frames too), in original units."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mpm_inr.codec import (
    bilinear,
    chebyshev,
    components,
    format,
    neighbour_codes,
    svd_file,
)
from mpm_inr.codec.quantise import (
    pack_array,
    smallest_int,
    unpack_array,
    unpack_tensors,
)
from mpm_inr.codec.window_meta import WindowFrames, held_out_mask, window_offsets
from mpm_inr.models import (
    CoordinateSource,
    InrType,
    NetworkContext,
    get_inr_type,
    network_from_config,
)

#: blob name of each per-particle label (FieldNetwork.particle_labels)
LABEL_BLOBS = {"material": "material", "object": "object_id"}


@dataclass(frozen=True)
class SeriesBasis:
    """A series file's model: per coded basis group, its curves ((d + 1)·P, r_g, C), codes (n_g, r_g), particles;
    the P stretches of the window the curves are piecewise over (format 7; one before). In a file that codes the
    components apart (format 8, mpm_inr.codec.components) the particles are the N·C particle-components, C is 1
    and the curves are in original units."""

    curves: list[np.ndarray]
    codes: list[np.ndarray]
    members: list[np.ndarray]
    stretches: chebyshev.Stretches = chebyshev.ONE_STRETCH
    split: bool = False


@dataclass
class CodecModel(WindowFrames):
    """A decodable model: the network with its (decoded) parameters and what maps its output to the window."""

    meta: dict[str, Any]  # the file's metadata (window, normalisation, model config, encoding)
    network: nn.Module | None  # None for a file that codes the components apart: no network decodes it
    constant: np.ndarray  # (N,) bool (N·C in a split file): particles whose values are constant over the window
    constant_values: np.ndarray  # (n_constant, C) float32 (C = 1 in a split file)
    series: SeriesBasis | None = None  # a bilinear basis stored as a Chebyshev series, with its codes

    @property
    def inr(self) -> InrType:
        return get_inr_type(self.meta["model"]["name"])

    def normalised_time(self, frames: Sequence[float] | np.ndarray) -> torch.Tensor:
        """Absolute (possibly fractional) frame numbers -> the time coordinate the network saw in training: the
        window's linspace(-1, 1) at whole frames, linear in between, over t_period."""
        return torch.from_numpy(self.window_time(frames)).float() / self.meta["window"]["t_period"]

    def window_time(self, frames: Sequence[float] | np.ndarray) -> np.ndarray:
        """Absolute (possibly fractional) frame numbers -> u in [-1, 1] over the window (float64)."""
        win = self.meta["window"]
        offset = window_offsets(win, frames)
        grid = torch.linspace(-1.0, 1.0, win["n_frames"]).double().numpy()
        return np.interp(offset, np.arange(win["n_frames"]), grid)

    @torch.no_grad()
    def predict(self, frames: Sequence[float] | np.ndarray) -> np.ndarray:
        """(len(frames), N, C) float32 in original units at absolute (possibly fractional) frame numbers."""
        win = self.meta["window"]
        if self.series is not None and self.series.split:
            n_particles, n_comp = win["n_particles"], win["n_components"]
            out = chebyshev.predict(self.series.curves, self.series.codes, self.series.members,
                                    self.window_time(frames), n_particles * n_comp, self.series.stretches)
            out = (out + components.split_centre(win["mean"], n_particles)).astype(np.float32)
            out[:, self.constant] = self.constant_values
            return components.from_parts(components.join(out, n_comp), self.meta["encoding"])
        if self.series is None:
            t = self.normalised_time(frames)
            src = CoordinateSource(t, torch.linspace(-1.0, 1.0, win["n_particles"]), None)
            out = self.inr.predict_frames(self.network, src, torch.arange(t.numel())).double().numpy()
        else:
            out = chebyshev.predict(self.series.curves, self.series.codes, self.series.members,
                                    self.window_time(frames), win["n_particles"], self.series.stretches)
        out = (out * as_float32(win["std"]) + as_float32(win["mean"])).astype(np.float32)
        out[:, self.constant] = self.constant_values
        return out

def as_float32(numbers: Sequence[float]) -> np.ndarray:
    """The window's statistics as the encoder used them: float32 values (a file may write them as the shortest
    decimal that reads back to that float32), in float64 arithmetic."""
    return np.asarray(numbers, dtype=np.float32).astype(np.float64)


def load(path: str | os.PathLike) -> CodecModel | svd_file.SVDModel:
    """Read, verify and rebuild a codec file, ours or the quantised SVD's (svd_file): one CodecError line for
    anything wrong with it."""
    box = format.read(path)
    return svd_file.from_container(box) if box.meta.get("kind") == svd_file.KIND else from_container(box)


def from_container(box: format.Container) -> CodecModel:
    meta, blobs = box.meta, box.blobs
    win, series = meta["window"], None
    split = meta["kind"] == "bilinear" and components.is_split(meta["encoding"])
    network = None if split else build(meta, blobs)
    n_coded = win["n_particles"] * (win["n_components"] if split else 1)
    constant = constant_mask(meta, blobs, n_coded)
    if split:
        coded = np.flatnonzero(~constant)
        blobs, encoding = neighbour_codes.restored_blobs(
            blobs, meta["encoding"], (coded.size,) + ((int(constant.sum()),) if constant.any() else ()),
            neighbour_codes.RowMap.of_split(constant, win["n_components"]))
        series, values = _series_parts({**meta, "encoding": encoding}, blobs, [coded], constant, 1,
                                       components.split_centre(win["mean"], win["n_particles"])[constant])
        state = {}
    elif meta["kind"] == "bilinear" and meta["encoding"].get("basis_kind", "network") == "chebyshev":
        series, values = _series_parts(meta, blobs, bilinear.coded_members(network, constant), constant,
                                       win["n_components"], as_float32(win["mean"]))
        state = {}
    elif meta["kind"] == "bilinear":
        members = bilinear.coded_members(network, constant)
        shapes = [(idx.size, network.latent_dim) for idx in members]
        shapes += [(int(constant.sum()), win["n_components"])] if constant.any() else []
        codes = bilinear.unpack_codes(blobs, meta["encoding"], shapes)
        latents = np.zeros((win["n_particles"], network.latent_dim), dtype=np.float32)
        for idx, group_codes in zip(members, codes, strict=False):
            latents[idx] = group_codes
        values = (as_float32(win["mean"]) + codes[-1]) if constant.any() else np.zeros((0, win["n_components"]))
        state = {**unpack_tensors("basis", blobs, meta["encoding"]["basis"]), "latents": latents}
    else:
        values = unpack_array(blobs["constant_values"], meta["encoding"]["constant_values"])
        state = unpack_tensors("weights", blobs, meta["encoding"]["weights"])
    if state:
        load_parameters(network, state)
    return CodecModel(meta, network, constant, values.astype(np.float32), series)


def constant_mask(meta: dict[str, Any], blobs: dict[str, bytes], n_coded: int) -> np.ndarray:
    """(n_coded,) bool, the particles (or particle-components) stored by value; none where the file has no mask
    (format 11: a file without such particles stores none, where every earlier one stored a mask of zeros, ~10-13
    bytes of a 1-2 KB Jp file at 100 frames)."""
    if "constant" not in meta:
        return np.zeros(n_coded, dtype=bool)
    bits = np.unpackbits(unpack_array(blobs["constant"], meta["constant"]))
    if bits.size < n_coded:
        raise format.CodecError(f"the file's constant-particle mask holds {bits.size} bits for {n_coded} coded "
                                f"particles; it is inconsistent, encode it again")
    return bits[:n_coded].astype(bool)


def _series_parts(meta: dict[str, Any], blobs: dict[str, bytes], members: list[np.ndarray], constant: np.ndarray,
                  n_comp: int, constant_centre: np.ndarray) -> tuple[SeriesBasis, np.ndarray]:
    """A series file's basis and codes per coded group (`members`, of `n_comp` components each), and the constant
    particles' values (`constant_centre` plus their codes)."""
    win, encoding = meta["window"], meta["encoding"]
    shapes = [(idx.size, 0) for idx in members]
    shapes += [(int(constant.sum()), n_comp)] if constant.any() else []
    codes = bilinear.unpack_codes(blobs, encoding, shapes)
    stretches = chebyshev.file_stretches(encoding, win["n_frames"], np.flatnonzero(~held_out_mask(win)))
    order = encoding.get("series_order")
    if order is not None and (order != chebyshev.CURVE_MAJOR or not chebyshev.curve_major(stretches)):
        raise format.CodecError(f"the file's series_order {order!r} is not one this reader knows for "
                                f"{stretches.count} stretches; it is inconsistent, encode it again")
    coefs = unpack_tensors("series", blobs, encoding["series"])["coefs"]
    if order is not None:
        coefs = chebyshev.loaded_coefs(coefs, stretches, sum(chebyshev.file_series_ranks(encoding)) * n_comp)
    curves = chebyshev.split_groups(coefs, chebyshev.file_series_ranks(encoding), n_comp)
    for group_curves in curves:
        stretches.degree(group_curves.shape[0])  # rows a whole number of stretches, or one CodecError line
    values = (constant_centre + codes[-1]) if constant.any() else np.zeros((0, n_comp))
    split = components.is_split(encoding)
    return SeriesBasis(curves, codes[:len(members)], members, stretches, split), values


def build(meta: dict[str, Any], blobs: dict[str, bytes]) -> nn.Module:
    """A fresh network of the file's model config, with the file's per-particle labels (zeros for a label the
    network does not read, which the file then does not hold)."""
    win = meta["window"]
    labels = {name: torch.from_numpy(unpack_array(blobs[name], meta[name]).astype(np.int64)) if name in meta
              else torch.zeros(win["n_particles"], dtype=torch.long) for name in LABEL_BLOBS.values()}
    ctx = NetworkContext(win["n_particles"], win["n_components"], labels["material"], labels["object_id"])
    network = network_from_config(meta["model"], ctx).eval()
    missing = {label for label in network.particle_labels if LABEL_BLOBS[label] not in meta}
    if missing:
        raise format.CodecError(f"the file's model reads the particles' {', '.join(sorted(missing))} labels, which "
                                f"the file lacks; it is inconsistent, encode it again")
    return network


def load_parameters(network: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Load decoded parameters; shared per-group codes (folded into each particle's code by the encoder) are zero."""
    full = {name: torch.zeros_like(value) for name, value in network.state_dict().items()}
    missing = set(state) - set(full)
    if missing:
        raise format.CodecError(f"the file holds parameters {sorted(missing)} its model config does not have; "
                                "it is inconsistent, encode it again")
    full.update({name: torch.from_numpy(np.asarray(value, dtype=np.float32)) for name, value in state.items()})
    network.load_state_dict(full)


def particle_blobs(material: np.ndarray, object_id: np.ndarray, constant: np.ndarray,
                   labels: frozenset[str]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Per-particle data a file holds: the labels the network reads (`labels`, FieldNetwork.particle_labels), and
    which particles are constant over the window, where any is (constant_mask)."""
    blobs, meta = {}, {}
    for label, values in (("material", material), ("object", object_id)):
        if label in labels:
            name = LABEL_BLOBS[label]
            blobs[name], meta[name] = pack_array(smallest_int(np.asarray(values, dtype=np.int64)))
    if constant.any():
        blobs["constant"], meta["constant"] = pack_array(np.packbits(constant))
    return blobs, meta
