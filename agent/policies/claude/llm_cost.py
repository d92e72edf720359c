"""Dollar estimates for Claude calls, so a study can enforce `budget.max_usd` before it spends.

The prices below are an ESTIMATE, copied by hand from Anthropic's published per-model prices as public pages reported
them on PRICES_AS_OF (Opus 4.5-4.7 $5/$25, Sonnet 4.x $3/$15, Haiku 4.5 $1/$5 per MTok in/out); they are not
fetched and may be stale. Anthropic bills what its console says, not what this table says. Rates are US
dollars per million tokens (MTok). Cache writes use the 5-minute rate (1.25x input) and cache reads 0.1x input,
the multipliers Anthropic documents for every model.

A model missing from the table is priced at the most expensive row (never at zero), so an unknown or new model
can only make the budget cap trip early, never late. `ModelPrice` can also be passed in from config to override.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES_AS_OF = "2026-04-23"


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def from_io(cls, input_per_mtok: float, output_per_mtok: float) -> ModelPrice:
        """Derive the cache rates from the documented multipliers."""
        return cls(input_per_mtok, output_per_mtok, 1.25 * input_per_mtok, 0.1 * input_per_mtok)


# Keyed by model alias; a dated snapshot name (claude-haiku-4-5-20251001) matches its alias by prefix.
PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-7": ModelPrice.from_io(5.0, 25.0),
    "claude-opus-4-6": ModelPrice.from_io(5.0, 25.0),
    "claude-opus-4-5": ModelPrice.from_io(5.0, 25.0),
    "claude-opus-4-1": ModelPrice.from_io(15.0, 75.0),
    "claude-opus-4-0": ModelPrice.from_io(15.0, 75.0),
    "claude-sonnet-4-6": ModelPrice.from_io(3.0, 15.0),
    "claude-sonnet-4-5": ModelPrice.from_io(3.0, 15.0),
    "claude-sonnet-4-0": ModelPrice.from_io(3.0, 15.0),
    "claude-haiku-4-5": ModelPrice.from_io(1.0, 5.0),
}

# Anthropic's documented rule of thumb for image input: tokens ~= width * height / 750, and images are scaled
# down so the long edge is at most 1568 px (about 1600 tokens at most).
_IMAGE_MAX_EDGE = 1568
_CHARS_PER_TOKEN = 3.0  # conservative (real text is ~3.5-4 chars/token): over-estimates, never under


@dataclass(frozen=True)
class PriceLookup:
    price: ModelPrice
    basis: str  # "table:<alias> as of <date>" | "override" | "unknown model: priced at <alias>"


def price_for(model: str, override: ModelPrice | None = None) -> PriceLookup:
    """The rates used for `model`; never zero."""
    if override is not None:
        return PriceLookup(override, "override")
    for alias in sorted(PRICES, key=len, reverse=True):
        if model == alias or model.startswith(alias + "-"):
            return PriceLookup(PRICES[alias], f"table:{alias} as of {PRICES_AS_OF}")
    worst = max(PRICES, key=lambda k: PRICES[k].output)
    return PriceLookup(PRICES[worst], f"unknown model: priced at {worst} as of {PRICES_AS_OF}")


def usage_cost(model: str, usage: Mapping[str, Any], override: ModelPrice | None = None) -> tuple[float, str]:
    """Estimated USD of one response from its `usage` block, and the basis of the estimate."""
    lookup = price_for(model, override)
    p = lookup.price
    tokens = {k: int(usage.get(k) or 0) for k in
              ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    usd = (tokens["input_tokens"] * p.input + tokens["output_tokens"] * p.output
           + tokens["cache_creation_input_tokens"] * p.cache_write
           + tokens["cache_read_input_tokens"] * p.cache_read) / 1e6
    return usd, lookup.basis


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or None if `data` is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def image_tokens(width: int, height: int) -> int:
    """Upper estimate of the input tokens one image costs after the API's downscaling."""
    scale = min(1.0, _IMAGE_MAX_EDGE / max(width, height, 1))
    return math.ceil(width * scale * height * scale / 750)


def estimate_request_usd(model: str, text_chars: int, images: list[tuple[int, int]], max_tokens: int,
                         override: ModelPrice | None = None) -> float:
    """Worst-case USD of a request before it is sent: every output token used, text at 3 chars/token."""
    p = price_for(model, override).price
    in_tokens = math.ceil(text_chars / _CHARS_PER_TOKEN) + sum(image_tokens(w, h) for w, h in images)
    return (in_tokens * p.input + max_tokens * p.output) / 1e6


def png_file_size(path: Path) -> tuple[int, int] | None:
    """PNG dimensions of a file without decoding it."""
    with open(path, "rb") as fh:
        return png_size(fh.read(24))
