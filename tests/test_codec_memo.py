"""What bounds the codec search's memory (its memo of stored series and fits, mpm_inr.codec.memo; the candidates
it keeps, encode.contenders), and what bounding it must not change: a search's results."""

from __future__ import annotations

import numpy as np
import pytest

from mpm_inr.codec import bilinear, chebyshev, memo
from mpm_inr.codec import format as codec_format
from mpm_inr.codec.encode import SCREEN_MARGIN, contenders, finalists, near_best


def sized(n_bytes: int) -> np.ndarray:
    return np.zeros(n_bytes, dtype=np.uint8)


def test_the_least_recently_used_go_first_once_past_the_budget():
    made: list[str] = []
    cache: memo.BytesMemo[np.ndarray] = memo.BytesMemo(lambda a: a.nbytes, budget=250)

    def get(key: str, n_bytes: int = 100) -> np.ndarray:
        return cache.get(key, lambda: made.append(key) or sized(n_bytes))

    get("a"), get("b"), get("a")  # a is now the most recently used
    get("c")  # 300 bytes: b goes
    assert "a" in cache and "c" in cache and "b" not in cache and cache.bytes == 200
    get("a"), get("b")
    assert made == ["a", "b", "c", "b"] and cache.misses == 4
    assert "c" not in cache  # b came back after a was used, so c was the oldest


def test_the_newest_value_is_kept_whatever_its_size():
    cache: memo.BytesMemo[np.ndarray] = memo.BytesMemo(lambda a: a.nbytes, budget=10)
    cache.get("small", lambda: sized(5))
    big = cache.get("big", lambda: sized(1000))
    assert len(cache) == 1 and "big" in cache and cache.get("big", lambda: sized(1)) is big


def test_a_negative_budget_is_one_line():
    with pytest.raises(ValueError, match="budget must be >= 0 bytes"):
        memo.BytesMemo(lambda a: a.nbytes, budget=-1)


def test_a_kept_series_with_a_tiny_memo_gives_the_same_files():
    """Evicting changes only the time a revisit takes: every stored series and fit a search asks for is the same
    with a memo of one entry as with the default."""
    rng = np.random.default_rng(3)
    n_frames, n_particles, k, degree = 30, 50, 4, 5
    u = chebyshev.frame_times(n_frames)
    shapes = np.stack([np.cos(np.outer(np.arange(1, k + 1), u)), np.sin(np.outer(np.arange(1, k + 1), u))], -1)
    values = np.einsum("pk,kfc->fpc", rng.normal(size=(n_particles, k)), shapes)
    values += 1e-3 * rng.normal(size=values.shape)
    members = [np.arange(0, 30), np.arange(30, n_particles)]
    projected = chebyshev.ProjectedTargets.build(values, np.zeros(2), np.ones(2), members, u, degree)
    coefs = rng.normal(size=(degree + 1, 2, k, 2))
    fits = projected.fits([coefs[:, 0], coefs[:, 1]])
    roomy = chebyshev.KeptSeries(coefs, fits, projected)
    tight = chebyshev.KeptSeries(coefs, fits, projected, memo_bytes=0)
    visits = [((0, 1, 2, 3), (0, 1)), ((0, 1), (0, 1)), ((0, 1, 2, 3), (0, 1)), ((0,), (0, 1, 2))] * 2
    for kept in visits:
        for bits in (8, 5):
            a, b = roomy.stored(kept, bits), tight.stored(kept, bits)
            assert a is not None and b is not None
            np.testing.assert_array_equal(a.stored, b.stored)
            for fa, fb in zip(a.fits, b.fits, strict=True):
                np.testing.assert_array_equal(fa.coefs, fb.coefs)
                np.testing.assert_array_equal(fa.target_basis, fb.target_basis)
            assert a.quantise(1e-2)[1] == b.quantise(1e-2)[1]
    assert len(tight._stored) == 1 and tight._stored.misses > roomy._stored.misses


def test_fewer_directions_are_searched_at_the_bits_near_the_best():
    assert near_best({8: 1009, 6: 1000, 5: 1011, 4: 1020}) == [6, 8]
    assert near_best({16: 500}) == [16]
    assert near_best({}) == []


def test_the_candidates_dropped_as_a_search_goes_could_never_be_finalists():
    rng = np.random.default_rng(1)
    sizes = rng.integers(1000, 1300, size=60)
    points = [(int(size), {"k": i}, {"b": bytes([i % 7])}) for i, size in enumerate(sizes)]
    kept: list = []
    for point in points:  # as a search adds them, one at a time
        kept = contenders([*kept, point])
    assert finalists(kept) == finalists(points)
    assert len(kept) < len(points) and all(p[0] <= sizes.min() * (1 + SCREEN_MARGIN) for p in kept)
    assert contenders([]) == []


def test_a_large_fits_klt_from_the_gram_matrix_matches_the_svd(monkeypatch):
    """Codes of many particles take their KLT from the directions' Gram matrix (no left vectors, as large as the
    codes): the same directions up to sign, the same codes in them, the same error."""
    rng = np.random.default_rng(4)
    basis = rng.normal(size=(6, 40)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])[:, None]
    target = rng.normal(size=(500, 6)) @ basis + 0.01 * rng.normal(size=(500, 40))
    sums = (basis @ basis.T, target @ basis.T, float((target ** 2).sum()))
    by_svd = bilinear.fit_from_sums(*sums)
    monkeypatch.setattr(bilinear, "GRAM_KLT_VALUES", 0)
    by_gram = bilinear.fit_from_sums(*sums)
    signs = np.sign(np.sum(by_svd.rotation * by_gram.rotation, axis=1))
    np.testing.assert_allclose(by_gram.rotation * signs[:, None], by_svd.rotation, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(by_gram.coefs * signs, by_svd.coefs, rtol=1e-8, atol=1e-10)
    # ss_res is the target's sum of squares less the part explained, so both are exact only to that sum's rounding
    # (a host without AVX-512 differed by 2e-10 relative to ss_res, 4e-16 relative to the sum)
    assert by_gram.ss_res == pytest.approx(by_svd.ss_res, rel=0, abs=1e-14 * sums[2])


def test_a_content_is_screened_once_and_the_least_recently_asked_goes_first(monkeypatch):
    compressed = []
    real = codec_format.lzma.compress
    monkeypatch.setattr(codec_format.lzma, "compress", lambda data, **kw: compressed.append(data) or real(data, **kw))
    monkeypatch.setattr(codec_format, "SCREENED_MEMO", 2)
    monkeypatch.setattr(codec_format, "_SCREENED", {})
    a, b, c = ({"codes": bytes([k]) * 5000, "rows": bytes(range(k + 9))} for k in range(3))
    sizes = [codec_format.screen_size(blobs) for blobs in (a, dict(a), b, a, c, b)]
    assert sizes[0] == sizes[1] == sizes[3] and len(compressed) == 4  # a, b, c, and b again (past the memo's 2)
    assert sizes[5] == sizes[2] == len(real(compressed[1], format=codec_format.lzma.FORMAT_RAW,
                                            filters=codec_format._SCREEN_FILTERS))


def test_a_finalist_s_payload_is_compressed_once_per_content(monkeypatch):
    """A finalist and its rescan often hold the same blobs under another step: the payload is compressed once,
    and is the payload a file of either would hold."""
    compressed = []
    real = codec_format.compress
    monkeypatch.setattr(codec_format, "compress", lambda data: compressed.append(data) or real(data))
    payload_of = codec_format.payloads_once()
    a, b = {"codes": bytes(range(200)) * 30, "rows": b"xyz"}, {"codes": bytes(range(100)) * 60, "rows": b"xyz"}
    packed = [payload_of(blobs) for blobs in (a, dict(a), b, a)]
    assert len(compressed) == 2 and packed[0] is packed[1] is packed[3]
    assert packed[0] == real(compressed[0]) and codec_format.decompress(packed[2]) == compressed[1]
    assert packed[2] == codec_format.payload(b)


def test_steps_keeping_the_same_directions_solve_them_once_and_give_the_same_codes(monkeypatch):
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(4, 30))
    codes = rng.normal(size=(200, 4)) * np.array([5.0, 2.0, 0.5, 0.01])
    fit = bilinear.fit_from_sums(basis @ basis.T, codes @ basis @ basis.T, float(np.sum((codes @ basis) ** 2)))
    fresh = bilinear.GroupFit(fit.gram, fit.target_basis, fit.target_sq, fit.rotation, fit.coefs)
    solves = []
    real = bilinear.StoredDirections.solved
    monkeypatch.setattr(bilinear.StoredDirections, "solved", lambda f, kept: solves.append(kept.size) or real(f, kept))
    peaks = np.sort(fit.code_peaks)[::-1]
    same = [peaks[2] * 2.5, peaks[2] * 3.0]  # both keep the two strongest directions (a peak of half a step)
    memoised = [bilinear.quantise_codes([fit], step) for step in (*same, same[0])]
    assert solves == [2]
    again = bilinear.quantise_codes([fit], peaks[1] * 2.5)  # one direction: solved anew
    assert solves == [2, 1] and again.ints[0].shape[1] == 1
    for step, got in zip((*same, same[0]), memoised, strict=True):
        want = bilinear.quantise_codes([fresh], step)
        fresh._stored = None
        assert got.ss_res == want.ss_res and all((a == b).all() for a, b in zip(got.ints, want.ints, strict=True))


def test_a_step_search_s_error_is_the_packed_codes_error_bit_for_bit():
    """A step search scores each step without making its integers (quantised_ss_res, RotatedSeries.ss_res):
    the step it keeps must decode to exactly the error it was kept for, so both ways agree to the last bit, at
    steps that keep every direction, some or none."""
    rng = np.random.default_rng(5)
    fits = []
    for n in (300, 41):
        basis = rng.normal(size=(5, 40))
        codes = rng.normal(size=(n, 5)) * np.array([40.0, 6.0, 1.0, 0.2, 0.003]) + 1e-3 * rng.normal(size=(n, 5))
        fits.append(bilinear.fit_from_sums(basis @ basis.T, codes @ basis @ basis.T,
                                           float(np.sum((codes @ basis) ** 2)) + 1.0))
    plain = [bilinear.fit_from_sums(f.gram, f.target_basis, f.target_sq, klt=False) for f in fits]
    rotated = chebyshev.RotatedSeries(np.zeros(1, np.float32), plain)
    for step in (1e-4, 3e-3, 0.07, 0.9, 13.0, 500.0):
        assert bilinear.quantised_ss_res(fits, step) == bilinear.quantise_codes(fits, step).ss_res
        assert rotated.ss_res(step) == rotated.quantise(step)[1]
