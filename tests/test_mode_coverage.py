"""ModeCoverage against a plain-numpy reference of the VEEGAN/PacGAN protocol."""

import math

import numpy as np
import pytest
import torch

from lbt_lightning.metrics import ModeCoverage


def reference(samples: np.ndarray, centers: np.ndarray, sigma: float, k: float = 3.0, min_count: int = 1):
    counts = np.zeros(len(centers), dtype=np.int64)
    hq = 0
    for x in samples:
        d = np.sqrt(((centers - x) ** 2).sum(1))
        j = int(np.argmin(d))
        if d[j] <= k * sigma:
            counts[j] += 1
            hq += 1
    p = counts / max(counts.sum(), 1)
    kl = sum(pi * math.log(pi * len(p)) for pi in p if pi > 0) if counts.sum() else math.inf
    return {"modes": int((counts >= min_count).sum()), "hq": hq / len(samples), "kl": kl, "nonfinite": 0}


def compute(samples, centers, sigma, **kw):
    metric = ModeCoverage(torch.as_tensor(centers, dtype=torch.float32), sigma, **kw)
    metric.update(torch.as_tensor(samples, dtype=torch.float32))
    return {k: float(v) for k, v in metric.compute().items()}


def ring(m=8, r=2.0):
    a = 2 * np.pi * np.arange(m) / m
    return np.stack([r * np.sin(a), r * np.cos(a)], 1)


def test_three_modes_only():
    centers, sigma = ring(), 0.02
    rng = np.random.default_rng(0)
    samples = centers[rng.integers(0, 3, 900)] + sigma * rng.normal(size=(900, 2))
    got, want = compute(samples, centers, sigma), reference(samples, centers, sigma)
    assert got["modes"] == want["modes"] == 3
    assert got["hq"] == pytest.approx(want["hq"])
    assert got["kl"] == pytest.approx(want["kl"], abs=1e-6)
    assert got["kl"] > math.log(8 / 3) - 0.05  # three equal modes of eight: KL = log(8/3)


def test_sample_at_3_1_sigma_is_not_hq():
    centers, sigma = ring(), 0.02
    inside = centers[:1] + np.array([[2.9 * sigma, 0.0]])
    outside = centers[1:2] + np.array([[0.0, 3.1 * sigma]])
    got = compute(np.concatenate([inside, outside]), centers, sigma)
    assert got == pytest.approx({"modes": 1.0, "hq": 0.5, "kl": math.log(8), "nonfinite": 0.0})


def test_uniform_histogram_has_zero_kl_and_all_modes():
    centers = ring()
    samples = np.repeat(centers, 10, axis=0)
    got = compute(samples, centers, 0.02)
    assert got == pytest.approx({"modes": 8.0, "hq": 1.0, "kl": 0.0, "nonfinite": 0.0}, abs=1e-6)


def test_min_count_pacgan_rule():
    centers, sigma = ring(), 0.02
    samples = np.concatenate([np.repeat(centers[:2], 25, axis=0), np.repeat(centers[2:5], 5, axis=0)])
    got = compute(samples, centers, sigma, min_count=20)
    want = reference(samples, centers, sigma, min_count=20)
    assert got["modes"] == want["modes"] == 2


def test_random_samples_match_reference():
    centers, sigma = ring(8, 1.0), 0.1
    samples = np.random.default_rng(1).normal(scale=0.8, size=(2000, 2))
    got, want = compute(samples, centers, sigma), reference(samples, centers, sigma)
    assert got == pytest.approx(want, rel=1e-5)


def test_no_hq_samples_gives_infinite_kl():
    got = compute(np.array([[50.0, 50.0]]), ring(), 0.02)
    assert got["modes"] == 0 and got["hq"] == 0 and math.isinf(got["kl"])


def test_state_sums_across_updates_like_ddp():
    """Two partial updates (as two ranks would sum) equal one update on all samples."""
    centers, sigma = ring(), 0.05
    samples = np.random.default_rng(2).normal(scale=2.0, size=(1000, 2))
    a = ModeCoverage(torch.tensor(centers).float(), sigma)
    b = ModeCoverage(torch.tensor(centers).float(), sigma)
    a.update(torch.tensor(samples[:400]).float())
    b.update(torch.tensor(samples[400:]).float())
    a.counts += b.counts
    a.total += b.total
    a.nonfinite += b.nonfinite
    assert {k: float(v) for k, v in a.compute().items()} == pytest.approx(compute(samples, centers, sigma))


@pytest.mark.parametrize(
    "kwargs, field",
    [({"sigma": 0.0}, "sigma"), ({"sigma": 0.1, "k": -1.0}, "k"), ({"sigma": 0.1, "min_count": 0}, "min_count")],
)
def test_bad_arguments_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModeCoverage(torch.zeros(2, 2), **kwargs)


def test_nan_samples_are_counted_never_hq_and_do_not_crash():
    centers, sigma = ring(), 0.02
    bad = np.array([[np.nan, 0.0], [np.inf, 1.0], [0.0, -np.inf]])
    samples = np.concatenate([np.repeat(centers, 10, axis=0), bad])  # 80 HQ, 3 non-finite
    got = compute(samples, centers, sigma)
    assert got == pytest.approx({"modes": 8.0, "hq": 80 / 83, "kl": 0.0, "nonfinite": 3.0}, abs=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")  # called before update on purpose
def test_an_empty_metric_is_nan_not_the_best_value():
    got = {k: float(v) for k, v in ModeCoverage(torch.tensor(ring()).float(), 0.02).compute().items()}
    assert got["modes"] == 0 and math.isnan(got["hq"]) and math.isnan(got["kl"])
