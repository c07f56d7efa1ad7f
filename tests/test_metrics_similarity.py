"""Tests for the map similarities, rank correlations, heatmaps and centre-of-mass shift."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxinterp import metrics


def _maps(seed: int, shape=(3, 9, 10)) -> np.ndarray:
    return np.array(jax.random.uniform(jax.random.key(seed, impl="rbg"), shape), np.float32)


def ssim_reference(a: np.ndarray, b: np.ndarray, size=7, sigma=1.5, data_range=1.0) -> float:
    """SSIM of two 2-D maps in float64, one window position at a time (Wang et al. 2004)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    r = np.arange(size) - (size - 1) / 2
    win = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    win /= win.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i : i + size, j : j + size], b[i : i + size, j : j + size]
            mu_a, mu_b = np.sum(win * pa), np.sum(win * pb)
            var_a = np.sum(win * (pa - mu_a) ** 2)
            var_b = np.sum(win * (pb - mu_b) ** 2)
            cov = np.sum(win * (pa - mu_a) * (pb - mu_b))
            num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
            values.append(num / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(values))


def test_identical_maps():
    a = _maps(0)
    for name, fn in metrics.SIMILARITIES.items():
        expected = 0.0 if name == "mse" else 1.0
        np.testing.assert_allclose(fn(a, a), expected, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(metrics.spearman(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(metrics.kendall_tau(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(metrics.topk_intersection(a, a, 5), 1.0)
    np.testing.assert_allclose(metrics.center_of_mass_shift(a, a), 0.0, atol=1e-6)


def test_pearson_cosine_mse_against_numpy():
    a, b = _maps(1), _maps(2)
    b[1] = 0.3 * a[1] + 0.7 * b[1]  # Some correlation.
    fa, fb = a.reshape(3, -1).astype(np.float64), b.reshape(3, -1).astype(np.float64)
    corr = [np.corrcoef(fa[i], fb[i])[0, 1] for i in range(3)]
    cos = [fa[i] @ fb[i] / np.linalg.norm(fa[i]) / np.linalg.norm(fb[i]) for i in range(3)]
    np.testing.assert_allclose(metrics.pearson(a, b), corr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics.pearson(a, -2.0 * a + 1.0), -1.0, rtol=1e-5)
    np.testing.assert_allclose(metrics.cosine_similarity(a, b), cos, rtol=1e-5)
    np.testing.assert_allclose(metrics.mse(a, b), np.mean((fa - fb) ** 2, axis=1), rtol=1e-5)
    # Undefined correlations are 0, not NaN; tiny maps do not underflow.
    const, zero = np.full_like(a, 0.5), np.zeros_like(a)
    np.testing.assert_array_equal(metrics.pearson(a, const), 0.0)
    np.testing.assert_array_equal(metrics.cosine_similarity(zero, a), 0.0)
    np.testing.assert_allclose(metrics.pearson(a * 1e-30, b * 1e-30), corr, rtol=1e-4)


def test_ssim_against_a_loop_reference():
    a, b = _maps(3, (2, 12, 11)), _maps(4, (2, 12, 11))
    b[0] = np.clip(a[0] + 0.1 * b[0], 0, 1)  # Similar, so SSIM is well inside (0, 1).
    ref = [ssim_reference(a[i], b[i]) for i in range(2)]
    np.testing.assert_allclose(metrics.ssim(a, b), ref, rtol=1e-4, atol=1e-5)
    assert 0.3 < ref[0] < 0.99
    ref5 = ssim_reference(a[1], b[1], size=5, sigma=1.0, data_range=2.0)
    got = metrics.ssim(a[1:], b[1:], window_size=5, sigma=1.0, data_range=2.0)
    np.testing.assert_allclose(got, [ref5], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="window_size"):
        metrics.ssim(a[:, :6], b[:, :6])
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        metrics.ssim(a.reshape(2, -1), b.reshape(2, -1))


@pytest.mark.parametrize("shape", [(4, 6, 7), (2, 300)])  # 300: several Kendall chunks.
def test_rank_correlations_against_scipy_with_ties(shape):
    a, b = _maps(5, shape), _maps(6, shape)
    b = 0.5 * a + 0.5 * b
    a, b = np.round(a * 4) / 4, np.round(b * 6) / 6  # Many ties in both.
    a[0] *= -1.0  # Signed values and −0.0.
    fa, fb = a.reshape(shape[0], -1), b.reshape(shape[0], -1)
    rho = [scipy.stats.spearmanr(fa[i], fb[i]).statistic for i in range(shape[0])]
    tau = [scipy.stats.kendalltau(fa[i], fb[i]).statistic for i in range(shape[0])]
    np.testing.assert_allclose(metrics.spearman(a, b), rho, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics.kendall_tau(a, b), tau, rtol=1e-5, atol=1e-6)
    ranks = metrics.average_ranks(jnp.asarray(fa))
    np.testing.assert_allclose(ranks, [scipy.stats.rankdata(r) for r in fa])


def test_rank_correlations_of_constant_maps_are_zero():
    a, c = _maps(7, (2, 5, 5)), np.ones((2, 5, 5), np.float32)
    np.testing.assert_array_equal(metrics.spearman(a, c), 0.0)
    np.testing.assert_array_equal(metrics.kendall_tau(c, a), 0.0)
    rev = -a
    np.testing.assert_allclose(metrics.kendall_tau(a, rev), -1.0, atol=1e-6)


def test_heatmap():
    a = np.zeros((2, 3, 3, 2), np.float32)
    a[0, 0, 0] = [1.0, -3.0]  # |1| + |−3| = 4, the max.
    a[0, 2, 1] = [0.0, 2.0]
    h = metrics.heatmap(a)
    assert h.shape == (2, 3, 3)
    expected = np.zeros((2, 3, 3))
    expected[0, 0, 0], expected[0, 2, 1] = 1.0, 0.5
    np.testing.assert_allclose(h, expected)  # Example 1 is all zero and stays zero.
    np.testing.assert_allclose(metrics.heatmap(np.array([[-2.0, 1.0]])), [[1.0, 0.5]])


def test_center_of_mass_shift():
    a = np.zeros((3, 6, 7), np.float32)
    b = np.zeros((3, 6, 7), np.float32)
    a[0, 0, 0], b[0, 3, 4] = 1.0, 2.0  # Distance 5.
    a[1, 1, 1], a[1, 1, 3] = 1.0, -1.0  # |map|: centre (1, 2).
    b[1, 1, 2] = 0.3
    b[2, 5, 6] = 1.0  # a[2] is all zero: centre ((6 − 1)/2, (7 − 1)/2) = (2.5, 3).
    expected = [5.0, 0.0, np.hypot(2.5, 3.0)]
    np.testing.assert_allclose(metrics.center_of_mass_shift(a, b), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.center_of_mass(b)[0], [3.0, 4.0])
    flat = np.array([[0.0, 1.0, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(metrics.center_of_mass(flat), [[2.0]])
    with pytest.raises(ValueError, match="map_b must have the shape of map_a"):
        metrics.center_of_mass_shift(a, b[:, :5])
