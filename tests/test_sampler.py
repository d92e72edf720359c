"""The point sampler draws uniformly over frames x particles, with no bias toward whole frames."""

import torch

from mpm_inr.training.sampler import PointSampler


def test_points_are_uniform_over_frames_and_particles():
    frames = torch.tensor([0, 1, 2, 4, 5])  # frame 3 held out
    s = PointSampler(frames, n_particles=7, n_points=4096, seed=1)
    counts = torch.zeros(6, 7)
    for _ in range(50):
        f, p = s.sample()
        counts.index_put_((f, p), torch.ones_like(f, dtype=torch.float), accumulate=True)
    assert counts[3].sum() == 0
    cells = counts[frames].flatten()
    expected = 50 * 4096 / cells.numel()
    chi2 = float(((cells - expected) ** 2 / expected).sum())
    assert chi2 < 34 * 2.5  # 34 dof; a biased sampler is far above this
    # one batch mixes many frames: not a whole-frame draw
    f, _ = s.sample()
    assert f.unique().numel() == 5


def test_frames_mode_draws_whole_frames():
    s = PointSampler(torch.arange(10), n_particles=4, n_points=0, mode="frames", frames_per_step=2, seed=0)
    f, p = s.sample()
    assert f.numel() == 8 and f.unique().numel() <= 2
    assert sorted(p[:4].tolist()) == [0, 1, 2, 3]


def test_same_seed_same_draws():
    a = PointSampler(torch.arange(10), 5, 100, seed=3).sample()
    b = PointSampler(torch.arange(10), 5, 100, seed=3).sample()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
