"""Numbers to small bytes: uniform scalar quantisation, per-row int weights, and arrays as byte planes.

Every array is stored as its bytes split into byte planes (all low bytes, then all high bytes), which the file
then codes with LZMA (`format.payload`): the high bytes of small integers are nearly constant, and LZMA codes a
constant run in a few bytes, where interleaved it would pay for every one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpm_inr.codec.format import CodecError

_SMALL = 64  # tensors with fewer values (biases, embeddings, scalars) are stored as floats: a scale would cost as much
FLOAT_BITS = (32, 16)  # bits that mean "store as IEEE floats", below that per-row integers


def pack_array(arr: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """(byte planes, spec) of any numeric array; `unpack_array(blob, spec)` gives it back bit-exactly.
    Signed integers are zigzag-mapped (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...) first, so a small value of either sign
    has an all-zero high byte."""
    arr = np.ascontiguousarray(arr)
    spec: dict[str, Any] = {"dtype": arr.dtype.newbyteorder("<").str, "shape": list(arr.shape)}
    if np.issubdtype(arr.dtype, np.signedinteger):
        wide = arr.astype(np.int64)
        arr = np.where(wide >= 0, 2 * wide, -2 * wide - 1).astype(arr.dtype.str.replace("i", "u"))
        spec["zigzag"] = True
    raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).view(np.uint8).reshape(-1, arr.dtype.itemsize)
    return np.ascontiguousarray(raw.T).tobytes(), spec


def unpack_array(blob: bytes, spec: dict[str, Any]) -> np.ndarray:
    dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
    planes = np.frombuffer(blob, dtype=np.uint8)
    if planes.size != dtype.itemsize * int(np.prod(shape)):
        raise CodecError(f"a stored array has {planes.size} bytes, its spec says {spec}; the file is inconsistent")
    stored = dtype.str.replace("i", "u") if spec.get("zigzag") else dtype.str
    arr = np.ascontiguousarray(planes.reshape(dtype.itemsize, -1).T).view(stored).reshape(shape)
    if spec.get("zigzag"):
        wide = arr.astype(np.int64)
        arr = np.where(wide % 2 == 0, wide // 2, -(wide + 1) // 2).astype(dtype)
    return arr


def smallest_int(q: np.ndarray) -> np.ndarray:
    """The same integers in the narrowest signed type that holds them (int8 for most quantised codes)."""
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if q.size == 0 or (q.min() >= info.min and q.max() <= info.max):
            return q.astype(dtype)
    return q.astype(np.int64)


def quantise_uniform(x: np.ndarray, step: float) -> np.ndarray:
    """Mid-tread uniform quantiser: the integer index of the nearest multiple of `step`."""
    return smallest_int(np.rint(np.asarray(x, dtype=np.float64) / step).astype(np.int64))


def quantise_tensor(x: np.ndarray, bits: int) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A weight tensor at `bits`: 32/16 -> floats; fewer -> (ints, per-row scales), one scale per output channel
    (first axis) so that a row of small weights keeps its relative precision. Below 16 bits the small tensors
    (biases, embeddings) and the scales are fp16 where fp16 holds them: their error is far below the ints'."""
    x = np.asarray(x, dtype=np.float32)
    if bits == 32:
        return x
    if not (bits == 16 or 2 <= bits < 16):
        raise CodecError(f"codec weight bits must be 32, 16 or 2..15, got {bits}")
    if bits == 16 or x.size < _SMALL or x.ndim < 2:
        return _half_if_exactish(x)
    rows = x.reshape(x.shape[0], -1)
    levels = 2 ** (bits - 1) - 1
    exact = np.abs(rows).max(axis=1) / levels
    scale = _half_if_exactish(exact)
    scale = np.where(scale.astype(np.float64) < exact, np.nextafter(scale, np.inf, dtype=scale.dtype), scale)
    scale = np.where(scale > 0, scale, np.ones_like(scale))  # rounded up: no weight needs more than `levels`
    ints = np.clip(np.rint(rows / scale.astype(np.float32)[:, None]), -levels, levels).astype(np.int64)
    return smallest_int(ints).reshape(x.shape), scale


def _half_if_exactish(x: np.ndarray) -> np.ndarray:
    """fp16 if every value keeps its magnitude there (no overflow, no non-zero underflowing to 0), else float32.
    The cast is the test: a value beyond fp16's range becomes inf there, which is no error to report."""
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
    return half if np.isfinite(half).all() and not np.any((half == 0) & (x != 0)) else x.astype(np.float32)


def dequantise_tensor(stored: np.ndarray | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    if isinstance(stored, tuple):
        ints, scale = stored
        rows = ints.reshape(ints.shape[0], -1) * scale.astype(np.float32)[:, None]
        return rows.reshape(ints.shape).astype(np.float32)
    return stored.astype(np.float32)


def pack_tensors(prefix: str, tensors: dict[str, np.ndarray], bits: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Quantise and pack a dict of weight tensors: (blobs keyed prefix/name[/scale], spec per tensor)."""
    blobs, specs = {}, {}
    for name, value in tensors.items():
        stored = quantise_tensor(value, bits)
        values = stored[0] if isinstance(stored, tuple) else stored
        blobs[f"{prefix}/{name}"], specs[name] = pack_array(values)
        if isinstance(stored, tuple):
            blobs[f"{prefix}/{name}/scale"], specs[name]["scale"] = pack_array(stored[1])
    return blobs, specs


def unpack_tensors(prefix: str, blobs: dict[str, bytes], specs: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, spec in specs.items():
        values = unpack_array(_blob(blobs, f"{prefix}/{name}"), spec)
        if "scale" in spec:
            out[name] = dequantise_tensor((values, unpack_array(_blob(blobs, f"{prefix}/{name}/scale"), spec["scale"])))
        else:
            out[name] = dequantise_tensor(values)
    return out


def roundtrip_tensors(tensors: dict[str, np.ndarray], bits: int) -> dict[str, np.ndarray]:
    """What a decoder will see for these tensors at `bits` (the encoder fits the codes to exactly that)."""
    return {name: dequantise_tensor(quantise_tensor(value, bits)) for name, value in tensors.items()}


def _blob(blobs: dict[str, bytes], key: str) -> bytes:
    try:
        return blobs[key]
    except KeyError:
        raise CodecError(f"the file lacks its {key!r} blob; it is inconsistent, encode it again") from None
