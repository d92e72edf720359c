"""The classical lossy compressors the INRs are compared with, behind one encode/decode interface.

Both compress one component of a window as a 2-D float32 array frames × particles with an absolute error bound
(measured on discs_3types: frames × particles beats particles × frames and a 3-D z-scored (T, N, C) block for
SZ3, and ties for ZFP). SZ3 uses its Lorenzo + regression predictor (`LORENZO_REG`), 2-4× smaller than its
default interpolation predictor at the same R² on these fields; ZFP uses fixed-accuracy mode, ~2× smaller than
fixed-rate at the same R². A stream's size is the length of what the library returns (header included): all a
decoder needs besides the array's shape.

pysz and zfpy are imported here, once; a missing one only fails when a baseline is asked for
(`require`), with a one-line error that names the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from mpm_inr.errors import UserError

try:
    import pysz
except ImportError:  # reported by `require` where the baselines are asked for
    pysz = None  # type: ignore[assignment]
try:
    import zfpy
except ImportError:  # reported by `require` where the baselines are asked for
    zfpy = None  # type: ignore[assignment]


class BaselinesUnavailable(UserError):
    """A compressor library is not installed."""


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


@dataclass(frozen=True)
class SZ3:
    """SZ3 (pysz), absolute error bound, Lorenzo + regression predictor."""

    name: str = "sz3"
    package: str = "pysz"
    setting: str = "SZ3 ABS error bound, LORENZO_REG predictor"
    start_scale: float = 1.0  # its rms error is ~ bound/√3, like a uniform quantiser

    def available(self) -> bool:
        return pysz is not None

    def stream_key(self, bound: float) -> float:
        """What the stream depends on: the bound itself (its quantisation bins are 2·bound wide)."""
        return float(bound)

    def encode(self, array: np.ndarray, bound: float) -> np.ndarray:
        config = pysz.szConfig()
        config.errorBoundMode = pysz.szErrorBoundMode.ABS
        config.absErrorBound = float(bound)
        config.cmprAlgo = pysz.szAlgorithm.LORENZO_REG
        stream, _ = pysz.sz.compress(np.ascontiguousarray(array, dtype=np.float32), config)
        return np.array(stream)  # own the bytes: pysz returns a view of its over-allocated buffer

    def decode(self, stream: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        decoded, _ = pysz.sz.decompress(stream, np.float32, shape)
        return decoded


@dataclass(frozen=True)
class ZFP:
    """ZFP (zfpy), fixed-accuracy mode (tolerance = absolute error bound)."""

    name: str = "zfp"
    package: str = "zfpy"
    setting: str = "ZFP fixed-accuracy mode (tolerance)"
    start_scale: float = 16.0  # its errors sit far below its tolerance: start the search at a 16× larger bound

    def available(self) -> bool:
        return zfpy is not None

    def stream_key(self, bound: float) -> float:
        """What the stream depends on: zfp keeps bit planes down to floor(log2(tolerance)) and stores only that
        exponent (zfp_stream_set_accuracy), so every bound in [2^m, 2^(m+1)) gives the same stream."""
        return float(math.frexp(bound)[1] - 1)

    def encode(self, array: np.ndarray, bound: float) -> np.ndarray:
        stream = zfpy.compress_numpy(np.ascontiguousarray(array, dtype=np.float32), tolerance=float(bound))
        return np.frombuffer(stream, dtype=np.uint8)

    def decode(self, stream: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        decoded = zfpy.decompress_numpy(stream.tobytes())
        return decoded.reshape(shape)


CODECS = {codec.name: codec for codec in (SZ3(), ZFP())}


def codec_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each codec's package: part of the cache key (another version, other streams)."""
    return {name: _package_version(CODECS[name].package) for name in names}


def require(names: tuple[str, ...]) -> tuple[SZ3 | ZFP, ...]:
    """The codecs called `names`; a one-line error if one is unknown or its package is not installed."""
    unknown = [name for name in names if name not in CODECS]
    if unknown:
        raise BaselinesUnavailable(f"unknown compressor(s) {', '.join(unknown)}; choose from {', '.join(CODECS)}")
    missing = [CODECS[name].package for name in names if not CODECS[name].available()]
    if missing:
        raise BaselinesUnavailable(f"the classical baselines need {' and '.join(missing)}: run `make install` "
                                   f"(or pip install {' '.join(missing)})")
    return tuple(CODECS[name] for name in names)
