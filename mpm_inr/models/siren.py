"""SIREN building blocks (Sitzmann et al. 2020) with the paper's initialisation.

First layer weights ~ U(-1/n, 1/n); hidden layers ~ U(-sqrt(6/n)/omega, sqrt(6/n)/omega), so that
pre-activations stay ~ U(-sqrt(6), sqrt(6)) at every depth. The head is linear. omega can be learnable; it is a
separate parameter named ``omega`` so the optimiser can give it its own learning rate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Sine(nn.Module):
    """sin(omega * (W x + b)) with a (possibly learnable) scalar omega."""

    def __init__(self, in_dim: int, out_dim: int, omega: float | nn.Parameter, is_first: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.omega = omega
        init_omega = float(omega.detach()) if isinstance(omega, Tensor) else float(omega)
        bound = 1.0 / in_dim if is_first else math.sqrt(6.0 / in_dim) / init_omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega * self.linear(x))


class SirenTrunk(nn.Module):
    """n_layers sine layers of width hidden_dim; returns the last hidden features."""

    def __init__(self, in_dim: int, hidden_dim: int, n_layers: int, omega: float, learn_omega: bool) -> None:
        super().__init__()
        if learn_omega:
            self.omega: float | nn.Parameter = nn.Parameter(torch.tensor(float(omega)))
        else:
            self.omega = float(omega)
        dims = [in_dim] + [hidden_dim] * n_layers
        self.layers = nn.Sequential(
            *(Sine(dims[i], dims[i + 1], self.omega, is_first=(i == 0)) for i in range(n_layers))
        )
        self.out_dim = hidden_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Siren(nn.Module):
    """SIREN trunk followed by a linear head, with the head initialised like a hidden layer."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int, n_layers: int, omega: float, learn_omega: bool = False
    ) -> None:
        super().__init__()
        self.trunk = SirenTrunk(in_dim, hidden_dim, n_layers, omega, learn_omega)
        self.head = nn.Linear(hidden_dim, out_dim)
        bound = math.sqrt(6.0 / hidden_dim) / float(omega)
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound)
            self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))
