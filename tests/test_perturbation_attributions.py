"""Occlusion and RISE against brute force and closed forms on linear scores."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attribution


def _linear(w):
    return lambda x: jnp.sum(x * w, axis=(1, 2, 3))


def _brute_occlusion(w, x, window, stride, baseline):
    b, h, wd, _ = x.shape
    s0 = np.sum(x * w, axis=(1, 2, 3))
    rows = sorted({*range(0, h - window + 1, stride), h - window})
    cols = sorted({*range(0, wd - window + 1, stride), wd - window})
    total, count = np.zeros((b, h, wd)), np.zeros((h, wd))
    for r, c in itertools.product(rows, cols):
        z = x.copy()
        z[:, r : r + window, c : c + window, :] = baseline
        drop = s0 - np.sum(z * w, axis=(1, 2, 3))
        total[:, r : r + window, c : c + window] += drop[:, None, None]
        count[r : r + window, c : c + window] += 1
    return np.repeat((total / count)[..., None], x.shape[-1], axis=-1)


@pytest.fixture(scope="module")
def data():
    kx, kw = jax.random.split(jax.random.key(0))
    x = np.asarray(jax.random.uniform(kx, (3, 6, 5, 2)), np.float64)
    w = np.asarray(jax.random.normal(kw, (1, 6, 5, 2)), np.float64)
    return x, w


def test_occlusion_1x1_is_the_linear_contribution(data):
    x, w = data
    with jax.enable_x64(True):  # differences of scores: exact in float64
        phi = jax.jit(lambda z: attribution.occlusion(_linear(w), z, window=1, baseline=0.25))(x)
    expected = np.sum(w * (x - 0.25), axis=-1, keepdims=True)
    np.testing.assert_allclose(phi, np.broadcast_to(expected, x.shape), rtol=1e-10)


@pytest.mark.parametrize("window,stride", [(2, 1), (3, 2), (2, 2)])
def test_occlusion_matches_brute_force_and_chunks(data, window, stride):
    x, w = data
    with jax.enable_x64(True):
        got = attribution.occlusion(_linear(w), x, window=window, stride=stride)
        chunked = attribution.occlusion(_linear(w), x, window=window, stride=stride, chunk_size=3)
    np.testing.assert_allclose(got, _brute_occlusion(w, x, window, stride, 0.0), rtol=1e-10)
    np.testing.assert_allclose(chunked, got, rtol=1e-12)


def test_rise_mean_mask_and_a_single_pixel_score():
    # A constant score gives φ = mean(M)/p, and E[M] = p at every pixel (bilinear upsampling
    # and cropping preserve the cells' mean): φ ≈ 1 everywhere.
    x = jnp.ones((2, 8, 8, 1))
    key, p = jax.random.key(3), 0.5
    run = jax.jit(
        lambda s, c: attribution.rise(
            s, x, key=key, num_masks=2000, grid=4, probability=p, chunk_size=c
        ),
        static_argnums=(0, 1),
    )
    ones = run(lambda z: jnp.ones(z.shape[:1]), 500)
    assert abs(float(ones.mean()) - 1.0) < 0.03 and float(jnp.abs(ones - 1).max()) < 0.15
    # A score that reads one pixel j: φ_k ∝ E[M_j M_k], largest at k = j (E[M_j²] >= p²).
    pixel = run(lambda z: z[:, 2, 5, 0], 500)
    assert tuple(np.unravel_index(int(jnp.argmax(pixel[0, ..., 0])), (8, 8))) == (2, 5)
    assert float(pixel[0, 2, 5, 0]) > float(pixel[0, 7, 0, 0]) + 0.05
    np.testing.assert_allclose(run(lambda z: z[:, 2, 5, 0], 800), pixel, rtol=1e-5)  # chunks
    assert pixel.shape == x.shape
    other = attribution.rise(lambda z: z[:, 2, 5, 0], x, key=jax.random.key(4), num_masks=50)
    assert not np.allclose(other, pixel)


def test_bad_arguments_raise():
    x = jnp.zeros((1, 4, 4, 1))
    s = _linear(jnp.ones((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="window must fit"):
        attribution.occlusion(s, x, window=5)
    with pytest.raises(TypeError, match="window"):
        attribution.occlusion(s, x, window="2")
    with pytest.raises(ValueError, match=r"x must be \[B, H, W, C\]"):
        attribution.occlusion(s, jnp.zeros((1, 16)))
    with pytest.raises(ValueError, match="probability"):
        attribution.rise(s, x, key=jax.random.key(0), probability=0.0)
    with pytest.raises(TypeError, match="key"):
        attribution.rise(s, x, key=None)


def test_registered_as_explainers():
    f = lambda p, z: z.reshape(z.shape[0], -1)[:, :3] * p  # noqa: E731
    x = jax.random.uniform(jax.random.key(5), (2, 4, 4, 1))
    y = jnp.array([0, 2])
    for name in ("occlusion", "rise"):
        a = attribution.EXPLAINERS.build(name)(f, 1.0, x, y, key=jax.random.key(6))
        assert a.shape == x.shape and bool(jnp.all(jnp.isfinite(a)))
