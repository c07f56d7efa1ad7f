"""The hand-written kernels against the maintained libraries that compute the same thing.

SSIM (``dm_pix.ssim``) and average ranks (``jax.scipy.stats.rankdata``) are equal, and the
library computes them; the Gaussian blur differs from ``dm_pix.gaussian_blur`` on purpose
(renormalised border instead of zero padding, see ``core.ops.gaussian_smoothing``): equal
in the interior, different at the border. TRADES' KL is optax's.
"""

from __future__ import annotations

import math

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import rankdata

from jaxinterp import metrics
from jaxinterp.core.ops import gaussian_smoothing
from jaxinterp.regularizers import _adversarial


def _pair(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=shape) * scale
    b = np.clip(a + 0.1 * scale * rng.normal(size=shape), 0.0, scale)  # similar maps
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "window_size", "sigma", "data_range", "scale"),
    [
        ((3, 9, 10), 7, 1.5, 1.0, 1.0),
        ((4, 28, 28), 7, 1.5, 1.0, 1.0),
        ((2, 12, 11), 5, 1.0, 2.0, 1.0),
        ((2, 16, 16), 7, 1.5, 1e-3, 1e-3),
    ],
)
def test_ssim_equals_dm_pix(dtype, shape, window_size, sigma, data_range, scale):
    a, b = _pair(0, shape, scale)
    a, b = a.astype(dtype), b.astype(dtype)
    got = metrics.ssim(a, b, window_size=window_size, sigma=sigma, data_range=data_range)
    # dm_pix with its own filter (jnp.convolve per row), on [B, H, W, 1] float32 images.
    ref = dm_pix.ssim(
        jnp.asarray(a[..., None], jnp.float32),
        jnp.asarray(b[..., None], jnp.float32),
        max_val=data_range,
        filter_size=window_size,
        filter_sigma=sigma,
    )
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)  # measured: <= 8e-7


def test_ssim_of_constant_and_opposite_maps_equals_dm_pix():
    a, _ = _pair(1, (2, 9, 9))
    a = a.astype(np.float32)
    for b in (np.full_like(a, 0.5), np.zeros_like(a), -a, a):
        ref = dm_pix.ssim(a[..., None], b[..., None], filter_size=7)
        np.testing.assert_allclose(metrics.ssim(a, b), ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 42), (2, 300), (3, 1000)])
@pytest.mark.parametrize("ties", [False, True])
def test_average_ranks_equal_rankdata(dtype, shape, ties):
    v = np.random.default_rng(2).uniform(-1.0, 1.0, size=shape)
    if ties:
        v = np.round(v * 4) / 4  # many ties, and −0.0 next to 0.0
        v[0, :4] = [0.0, -0.0, 0.0, -0.0]
    v = v.astype(dtype)
    got = metrics.average_ranks(v)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, rankdata(jnp.asarray(v), "average", axis=1))
    if ties:
        assert got[0, 0] == got[0, 1]  # −0.0 and 0.0 tie


def test_average_ranks_in_float64_mode_stay_float32():
    with jax.enable_x64(True):
        v = np.round(np.random.default_rng(3).uniform(size=(3, 100)) * 5)
        got = metrics.average_ranks(v)
        ref = rankdata(jnp.asarray(v), "average", axis=1)
        assert got.dtype == jnp.float32 and ref.dtype == jnp.float64
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_blur_equals_dm_pix_in_the_interior_only(sigma):
    x = jnp.asarray(np.random.default_rng(4).uniform(size=(2, 48, 40, 3)), jnp.float32)
    r = math.ceil(6 * sigma)
    ours = gaussian_smoothing(sigma)(x)
    pix = dm_pix.gaussian_blur(x, sigma, 2 * r + 1)
    inner = (slice(None), slice(r, -r), slice(r, -r))
    np.testing.assert_allclose(ours[inner], pix[inner], rtol=0, atol=1e-6)  # measured: 3e-7
    # The difference on purpose: dm_pix zero-pads, so a constant image darkens at the border
    # (by about half in a corner at sigma >= 1); the renormalised blur keeps it constant.
    const = jnp.ones((1, 48, 40, 1), jnp.float32)
    np.testing.assert_allclose(gaussian_smoothing(sigma)(const), 1.0, rtol=1e-6)
    corner = float(dm_pix.gaussian_blur(const, sigma, 2 * r + 1)[0, 0, 0, 0])
    g = np.exp(-np.square(np.arange(-r, r + 1)) / (2 * sigma**2))
    edge = g[r:].sum() / g.sum()  # the kernel mass that falls inside, per axis
    assert corner < 0.81
    np.testing.assert_allclose(corner, edge**2, rtol=1e-5)
    assert float(jnp.max(jnp.abs(ours - pix))) > 0.1


def test_trades_kl_is_optax():
    rng = np.random.default_rng(5)
    log_p = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(4, 10)), jnp.float32))
    log_q = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(4, 10)), jnp.float32))
    got = _adversarial._kl(log_p, log_q)
    np.testing.assert_array_equal(got, optax.losses.kl_divergence_with_log_targets(log_q, log_p))
    np.testing.assert_allclose(got, jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=1), rtol=1e-5)
