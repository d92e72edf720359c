"""SIREN building blocks (Sitzmann et al. 2020) with the paper's weight initialisation.

Weights: first layer ~ U(-1/n, 1/n); hidden layers ~ U(-sqrt(6/n)/omega, sqrt(6/n)/omega), so that
pre-activations stay ~ U(-sqrt(6), sqrt(6)) at every depth. The head is linear. omega can be learnable; it is a
separate parameter named ``omega`` so the optimiser can give it its own learning rate.

Two choices are open, because the reference (saalfeldlab/MPM_pytorch) made them differently from our default:

- ``bias_init`` of the sine layers: ``weight_bound`` draws each bias from U(± that layer's weight bound);
  ``fan_in`` draws it from U(± 1/sqrt(fan_in)), PyTorch's default, which the reference (and Sitzmann's code) keep.
- ``head_init``: ``hidden`` initialises the head like a hidden layer, U(± sqrt(6/h)/omega), with a zero bias;
  ``reference`` uses the reference's smaller U(± sqrt(0.1/h)/omega) (sqrt(60) ≈ 7.7x narrower) and PyTorch's
  default bias U(± 1/sqrt(h)).

A network with ``n_layers`` sine layers has (in+1)·h + (n_layers-1)·(h²+h) + (h+1)·out parameters. The
reference's ``n_layers_nnr_f`` counts the sine layers *after* the first, so it is ``n_layers - 1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mpm_inr.config.choices import BIAS_INITS, HEAD_INITS
from mpm_inr.errors import ConfigError


def _choice(key: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ConfigError(f"model.{key}={value!r} is unknown; valid: {', '.join(valid)}")
    return value


def sine_weight_bound(in_dim: int, omega: float, is_first: bool) -> float:
    """Half-width of the uniform weight init of a sine layer (the paper's)."""
    return 1.0 / in_dim if is_first else math.sqrt(6.0 / in_dim) / omega


def head_bounds(hidden_dim: int, omega: float, head_init: str) -> tuple[float, float]:
    """(weight, bias) half-widths of the linear head's uniform init; a bias half-width of 0 means zero bias."""
    if _choice("head_init", head_init, HEAD_INITS) == "reference":
        return math.sqrt(0.1 / hidden_dim) / omega, 1.0 / math.sqrt(hidden_dim)
    return math.sqrt(6.0 / hidden_dim) / omega, 0.0


class Sine(nn.Module):
    """sin(omega * (W x + b)) with a (possibly learnable) scalar omega."""

    def __init__(self, in_dim: int, out_dim: int, omega: float | nn.Parameter, is_first: bool,
                 bias_init: str = "weight_bound") -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.omega = omega
        init_omega = float(omega.detach()) if isinstance(omega, Tensor) else float(omega)
        bound = sine_weight_bound(in_dim, init_omega, is_first)
        bias_bound = bound if _choice("bias_init", bias_init, BIAS_INITS) == "weight_bound" else 1 / math.sqrt(in_dim)
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bias_bound, bias_bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega * self.linear(x))


class SirenTrunk(nn.Module):
    """n_layers sine layers of width hidden_dim; returns the last hidden features."""

    def __init__(self, in_dim: int, hidden_dim: int, n_layers: int, omega: float, learn_omega: bool,
                 bias_init: str = "weight_bound") -> None:
        super().__init__()
        if learn_omega:
            self.omega: float | nn.Parameter = nn.Parameter(torch.tensor(float(omega)))
        else:
            self.omega = float(omega)
        dims = [in_dim] + [hidden_dim] * n_layers
        self.layers = nn.Sequential(
            *(Sine(dims[i], dims[i + 1], self.omega, is_first=(i == 0), bias_init=bias_init) for i in range(n_layers))
        )
        self.out_dim = hidden_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Siren(nn.Module):
    """SIREN trunk followed by a linear head (initialised by `head_init`, see the module docstring)."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int, n_layers: int, omega: float, learn_omega: bool = False,
        head_init: str = "hidden", bias_init: str = "weight_bound",
    ) -> None:
        super().__init__()
        self.trunk = SirenTrunk(in_dim, hidden_dim, n_layers, omega, learn_omega, bias_init)
        self.head = nn.Linear(hidden_dim, out_dim)
        weight_bound, bias_bound = head_bounds(hidden_dim, float(omega), head_init)
        with torch.no_grad():
            self.head.weight.uniform_(-weight_bound, weight_bound)
            if bias_bound > 0:
                self.head.bias.uniform_(-bias_bound, bias_bound)
            else:
                self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))

