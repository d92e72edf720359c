"""The codec's number packing: bit-exact array round trips, bounded weight quantisation, the container's checks."""

from __future__ import annotations

import numpy as np
import pytest

from mpm_inr.codec import CodecError, bilinear, chebyshev, format
from mpm_inr.codec import encode as encode_module
from mpm_inr.codec.quantise import (
    dequantise_tensor,
    pack_array,
    quantise_tensor,
    unpack_array,
)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint8, np.float16, np.float32, np.float64])
def test_arrays_round_trip_bit_exactly(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    values = rng.integers(info.min, info.max, size=(7, 5), endpoint=True) if info else rng.normal(size=(7, 5)) * 1e3
    arr = values.astype(dtype)
    blob, spec = pack_array(arr)
    back = unpack_array(blob, spec)
    assert back.dtype == arr.dtype and back.shape == arr.shape and back.tobytes() == arr.tobytes()


def test_small_signed_ints_compress_to_few_bytes():
    """zigzag: small values of either sign leave the high byte plane all zero."""
    q = np.random.default_rng(1).integers(-3, 4, size=20000).astype(np.int16)
    blob, _ = pack_array(q)
    assert not any(blob[q.size:]) and len(format.compress(blob)) < 0.25 * q.nbytes


@pytest.mark.parametrize("bits", [3, 4, 8, 12])
def test_weight_quantisation_error_is_half_a_step_per_row(bits):
    w = np.random.default_rng(2).normal(size=(16, 40)).astype(np.float32) * np.linspace(0.01, 10, 16)[:, None]
    ints, scale = quantise_tensor(w, bits)
    assert np.abs(ints).max() <= 2 ** (bits - 1) - 1
    err = np.abs(dequantise_tensor((ints, scale)) - w)
    assert (err <= scale.astype(np.float32)[:, None] / 2 * (1 + 1e-3)).all()


def test_float_precisions_and_small_tensors():
    w = np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)
    assert (quantise_tensor(w, 32) == w).all()
    assert quantise_tensor(w, 16).dtype == np.float16
    assert quantise_tensor(np.float32([1e-9, 1.0]), 4).dtype == np.float32  # 1e-9 would underflow in fp16
    with pytest.raises(format.CodecError, match="bits"):
        quantise_tensor(w, 1)


def test_container_round_trip_and_version_field():
    meta = {"a": [1, 2.5], "x": {"dtype": "<u2", "shape": [1]},
            "encoding": {"y": {"dtype": "|i1", "shape": [0], "scale": {"dtype": "<f2", "shape": [1]}}}}
    blobs = {"x": b"\x00\x01", "y": b"", "y/scale": b"\x00\x3c"}
    data = format.pack(meta, blobs)
    box = format.parse(data)
    assert box.version == format.FORMAT_VERSION and box.meta == meta
    assert box.blobs == blobs and box.n_bytes == len(data)


def test_the_arrays_sizes_come_from_their_specs():
    """Version 5 lists no table of sizes: an array without a spec, or of another size, is refused when written."""
    meta = {"x": {"dtype": "<u2", "shape": [1]}}
    assert format.array_sizes({**meta, "encoding": {"codes": {"dtype": "<i2", "shape": [3, 2]}}}) == {
        "x": 2, "codes": 12}
    with pytest.raises(format.CodecError, match="do not match their specs"):
        format.pack(meta, {"x": b"\x00"})
    with pytest.raises(format.CodecError, match="do not match their specs"):
        format.pack(meta, {"x": b"\x00\x01", "z": b""})


def test_klt_codes_quantisation_error_is_closed_form():
    """With orthonormal directions the decoded error is Σ(q·δ − c)² over the coefficients, as measured."""
    rng = np.random.default_rng(4)
    basis = rng.normal(size=(5, 60))
    values = (rng.normal(size=(200, 5)) @ basis + 0.01 * rng.normal(size=(200, 60))).reshape(200, 20, 3)
    values = values.transpose(1, 0, 2)  # (F, N, C) with F·C = 60
    fits = bilinear.fit_groups([basis], values, np.zeros(3), [np.arange(200)])
    step = 0.05
    codes = bilinear.quantise_codes(fits, step)
    blobs, meta = bilinear.pack_codes(codes)
    decoded = bilinear.unpack_codes(blobs, meta, [(200, 5)])[0]
    targets = values.transpose(1, 0, 2).reshape(200, -1)
    assert codes.ss_res == pytest.approx(float(((targets - decoded @ basis) ** 2).sum()), rel=1e-9)
    assert fits[0].ss_res < codes.ss_res < fits[0].ss_res + 200 * 5 * step ** 2 / 4


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_tensor_beyond_fp16_s_range_stays_float32_without_a_warning():
    """Whether fp16 holds a tensor is tested by casting it; the overflow of that probe is no warning to print."""
    wide = np.array([1.0, 7e4], np.float32)  # fp16 tops out at 65504
    stored = quantise_tensor(wide, 16)
    assert stored.dtype == np.float32 and np.array_equal(stored, wide)


def test_codes_stored_particle_major_decode_alike_and_an_unknown_order_is_refused():
    """Codes packed each particle's integers together (format 8's codes_order) decode to the same numbers as
    direction by direction; the encoder keeps the order whose fast-compressed prefix is smaller."""
    rng = np.random.default_rng(5)
    ints = [rng.integers(-3, 4, size=(50, 4)).astype(np.int16), rng.integers(-9, 9, size=(7, 2)).astype(np.int16)]
    codes = bilinear.QuantisedCodes(0.5, [None, None], [None, None], ints, 0.0)
    shapes = [(50, 0), (7, 0)]
    by_direction, by_particle = (bilinear.pack_codes(codes, particle_major=p) for p in (False, True))
    assert "codes_order" not in by_direction[1] and by_particle[1]["codes_order"] == "particle"
    assert by_direction[0]["codes"] != by_particle[0]["codes"]
    for blobs, meta in (by_direction, by_particle):
        decoded = bilinear.unpack_codes(blobs, meta, shapes)
        for got, want in zip(decoded, ints, strict=True):
            np.testing.assert_array_equal(got, want * 0.5)
    with pytest.raises(CodecError, match="codes_order 'diagonal'"):
        bilinear.unpack_codes(by_particle[0], {**by_particle[1], "codes_order": "diagonal"}, shapes)
    # a tenth of the particles move, in every direction, the rest code to zeros: particle by particle the zeros
    # are a few long runs, direction by direction eight times as many short ones (C's still particles)
    moving = rng.random(4000) < 0.1
    sparse = [(rng.integers(-60, 60, size=(4000, 8)) * moving[:, None]).astype(np.int16)]
    chosen = encode_module.packed_codes(bilinear.QuantisedCodes(1.0, [None], [None], sparse, 0.0))
    assert chosen[1].get("codes_order") == "particle"


def test_reordering_packed_codes_gives_the_other_order_s_packing_and_back():
    """bilinear.reordered_codes turns one order's blob into exactly what pack_codes writes in the other, groups of
    other sizes and ranks (one of rank 0) included, keeping the rest of the metadata; twice is the original."""
    rng = np.random.default_rng(11)
    ints = [rng.integers(-300, 300, size=(40, 3)).astype(np.int16), np.zeros((5, 0), dtype=np.int16),
            rng.integers(-9, 9, size=(9, 2)).astype(np.int16)]
    codes = bilinear.QuantisedCodes(0.5, [None] * 3, [None] * 3, ints, 0.0)
    assert codes.particles == (40, 5, 9)
    by_direction, by_particle = (bilinear.pack_codes(codes, particle_major=p) for p in (False, True))
    extra = {"weight_bits": 6, "series": {"coefs": {"shape": [2, 2]}}}
    turned = bilinear.reordered_codes({**by_direction[0], "series/coefs": b"kept"}, {**by_direction[1], **extra},
                                      codes.particles)
    assert turned == ({**by_particle[0], "series/coefs": b"kept"}, {**by_particle[1], **extra})
    back = bilinear.reordered_codes(*by_particle, codes.particles)
    assert back[0] == by_direction[0] and back[1] == by_direction[1] and "codes_order" not in back[1]
    with pytest.raises(CodecError, match="not groups of"):
        bilinear.reordered_codes(*by_direction, (40, 5, 8))


def test_the_finalists_are_compressed_in_both_orders_and_the_smaller_file_kept():
    """The encoder's fast screen can pick the order that compresses worse for real (encode.in_both_orders): the
    file written is the smaller of each finalist's two orders, whichever order its point was found in."""
    rng = np.random.default_rng(5)
    moving = rng.random(4000) < 0.1  # particle by particle the zeros are a few long runs (as packed_codes' test)
    sparse = [(rng.integers(-60, 60, size=(4000, 8)) * moving[:, None]).astype(np.int16)]
    codes = bilinear.QuantisedCodes(1.0, [None], [None], sparse, 0.0)
    blobs, meta = bilinear.pack_codes(codes, particle_major=False)  # the worse order, as if the screen chose it
    found = encode_module.Point(1, meta, blobs, particles=codes.particles)
    both = encode_module.in_both_orders([found])
    assert [p.meta.get("codes_order") for p in both] == [None, "particle"]
    kind_meta, kind_blobs, packed = encode_module._smallest([found], {"kind": "bilinear"}, {})
    assert kind_meta.get("codes_order") == "particle"
    assert len(packed) < len(format.payload(blobs)) and packed == format.payload(kind_blobs)
    decoded = bilinear.unpack_codes(kind_blobs, kind_meta, [(4000, 0)])
    np.testing.assert_array_equal(decoded[0], sparse[0])


def test_the_finalists_are_compressed_in_the_order_of_their_calibrated_estimates_while_near_the_best():
    """encode.calibrated_smallest: the smallest screened point of each codes order is compressed first; each
    point's real size is estimated with its order's real/screened ratio, and points are compressed, smallest
    estimate first, only while the estimate is within CALIBRATED_MARGIN of the best real size so far. A point
    that screens larger in an order the screen misjudges is still the one kept."""
    real = {"a": 900, "b": 905, "c": 990, "p": 800, "q": 790, "r": 1000}
    screened = {"a": 1000, "b": 1001, "c": 1100, "p": 1000, "q": 1002, "r": 1250}
    points = [encode_module.Point(screened[n], {"name": n, **({"codes_order": "particle"} if n in "pqr" else {})}, {})
              for n in "abcpqr"]
    asked = []

    def sized(point):
        asked.append(point.meta["name"])
        return real[point.meta["name"]], b"", point

    n_bytes, _, chosen = encode_module.calibrated_smallest(points, sized)
    assert (n_bytes, chosen.meta["name"]) == (790, "q")
    assert asked[:2] == ["a", "p"] and "q" in asked and not {"c", "r", "b"} & set(asked)


def test_codes_without_directions_store_no_arrays_of_them_and_decode_alike():
    """Format 11: where no group keeps directions (a series file's coded groups) the file holds no rows, no row
    scales and no `directions` flags; where one does, the flags say which, as before."""
    rng = np.random.default_rng(7)
    ints = [rng.integers(-5, 6, size=(30, 2)).astype(np.int8), rng.integers(-5, 6, size=(6, 1)).astype(np.int8)]
    bare = bilinear.QuantisedCodes(0.25, [None, None], [None, None], ints, 0.0)
    blobs, meta = bilinear.pack_codes(bare)
    assert {"rows", "row_scales", "directions"}.isdisjoint(meta) and set(blobs) == {"codes"}
    for got, want in zip(bilinear.unpack_codes(blobs, meta, [(30, 0), (6, 0)]), ints, strict=True):
        np.testing.assert_array_equal(got, want * 0.25)
    rows = np.array([[bilinear.ROW_LEVELS, 0, 0]], np.int8)
    mixed = bilinear.QuantisedCodes(0.25, [None, rows], [None, np.ones(1, np.float32)], ints, 0.0)
    blobs, meta = bilinear.pack_codes(mixed)
    assert meta["directions"] == [False, True] and meta["rows"]["shape"] == [3]
    decoded = bilinear.unpack_codes(blobs, meta, [(30, 0), (6, 3)])
    np.testing.assert_array_equal(decoded[1], ints[1] * 0.25 * [[1.0, 0.0, 0.0]])


def test_a_series_file_names_its_curves_per_group_only_where_they_are_not_its_codes_ranks():
    assert chebyshev.series_ranks_meta([2, 3], [2, 3]) == {}
    assert chebyshev.series_ranks_meta([2], [2, 1]) == {"series_ranks": [2]}  # the constant particles' group
    assert chebyshev.file_series_ranks({"ranks": [2, 1], "series_ranks": [2]}) == [2]
    assert chebyshev.file_series_ranks({"ranks": [4]}) == [4]
