"""Tests for deletion/insertion AUC, infidelity and the completeness delta."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attribution, metrics
from jaxinterp.core.ops import descending_ranks
from jaxinterp.metrics._substrates import blur
from tests._metrics_util import _key, run


def linear(w):
    """``s(x) = Σ w ⊙ x`` per example, for any ``x [B, ...]`` with ``w`` one example's shape."""
    w = jnp.asarray(w, jnp.float32)
    return lambda x: jnp.sum((x * w[None]).reshape(x.shape[0], -1), axis=1)


def test_auc_by_hand_on_a_linear_score():
    # s(x) = 4x0 + 3x1 + 2x2 + x3 at x = 1; T = P = 4, one feature per step.
    w = jnp.array([4.0, 3.0, 2.0, 1.0])
    x = jnp.ones((1, 4))
    s = linear(w)
    perfect, reverse = w[None], -w[None]
    # Deletion scores 10, 6, 3, 1, 0 -> (10/2 + 6 + 3 + 1 + 0/2) / 4 = 3.75.
    np.testing.assert_allclose(metrics.deletion_auc(s, x, perfect, num_steps=4), [3.75])
    # Reversed: 10, 9, 7, 4, 0 -> 25/4.
    np.testing.assert_allclose(metrics.deletion_auc(s, x, reverse, num_steps=4), [6.25])
    ins = dict(num_steps=4, substrate="zeros")
    np.testing.assert_allclose(metrics.insertion_auc(s, x, perfect, **ins), [6.25])
    np.testing.assert_allclose(metrics.insertion_auc(s, x, reverse, **ins), [3.75])
    curve = metrics.perturbation_curve(s, x, perfect, num_steps=4)
    np.testing.assert_allclose(curve, [[10.0, 6.0, 3.0, 1.0, 0.0]])


def test_step_counts_ties_and_signed_channel_sum():
    # Features weighted by powers of two: the score says exactly which ones are deleted.
    w = 2.0 ** jnp.arange(5.0)
    s = linear(w)
    x = jnp.ones((1, 5))
    # T = 2, P = 5: n_t = floor(t * 5/2 + 1/2) = 0, 3, 5 (2.5 rounds up). All ties: the
    # first step deletes 3 features in the key's random order, not the first 3 by index.
    deleted = set()
    for seed in range(12):
        key = jax.random.PRNGKey(seed)
        curve = metrics.perturbation_curve(s, x, jnp.zeros((1, 5)), num_steps=2, key=key)
        top = np.flatnonzero(np.asarray(descending_ranks(jnp.zeros((1, 5)), key=key))[0] < 3)
        np.testing.assert_allclose(curve, [[31.0, 31.0 - float(np.sum(2.0**top)), 0.0]])
        deleted.add(tuple(top))
    assert len(deleted) > 3  # Different keys, different tie orders.
    # Ranking by the signed channel sum: pixel 1 has |a| large but Σ_c a = 0.
    img_w = 2.0 ** jnp.arange(4.0).reshape(2, 2, 1)
    xi = jnp.ones((1, 2, 2, 2))
    a = jnp.array([[[[1.0, 1.0], [5.0, -5.0]], [[0.5, 0.0], [3.0, 0.0]]]])  # r = 2, 0, .5, 3
    sc = linear(jnp.broadcast_to(img_w, (2, 2, 2)))
    curve = run(metrics.perturbation_curve, sc, xi, a, num_steps=4)  # Order: 3, 0, 2, 1.
    removed = np.cumsum([0.0, 8.0, 1.0, 4.0, 2.0]) * 2  # Two channels per pixel.
    np.testing.assert_allclose(curve, 30.0 - removed[None])


def test_perfect_beats_reversed_on_images():
    key = jax.random.split(_key(1), 2)
    w = jax.random.uniform(key[0], (8, 8, 1), minval=0.1, maxval=1.0)
    s = linear(w)
    x = jax.random.uniform(key[1], (3, 8, 8, 1), minval=0.2, maxval=1.0)
    perfect = x * w[None]  # Gradient × input: each pixel's exact contribution.
    for substrate in ("zeros", "mean"):
        kw = dict(num_steps=8, substrate=substrate)
        good, bad = (run(metrics.deletion_auc, s, x, a, **kw) for a in (perfect, -perfect))
        assert np.all(good < bad)
    kw = dict(num_steps=8, substrate="zeros")
    good, bad = (run(metrics.insertion_auc, s, x, a, **kw) for a in (perfect, -perfect))
    assert np.all(good > bad)


def test_substrates_are_the_endpoints():
    x = jax.random.uniform(_key(2), (2, 8, 8, 3))
    a = jax.random.normal(_key(3), x.shape)
    s = linear(jnp.ones((8, 8, 3)))
    means = x.mean(axis=(1, 2))  # [B, C]
    for name, base_score in [
        ("zeros", jnp.zeros(2)),
        ("mean", means.sum(1) * 64),
        ("blur", s(blur(x, 1.0))),
    ]:
        d = run(metrics.perturbation_curve, s, x, a, num_steps=3, substrate=name)
        i = run(metrics.perturbation_curve, s, x, a, num_steps=3, mode="insertion", substrate=name)
        np.testing.assert_allclose(d[:, 0], s(x), rtol=1e-5)
        np.testing.assert_allclose(d[:, -1], base_score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(i[:, 0], base_score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(i[:, -1], s(x), rtol=1e-5)
    # An explicit sigma and a substrate array.
    sharp = run(metrics.perturbation_curve, s, x, a, num_steps=2, substrate="blur", blur_sigma=0.3)
    np.testing.assert_allclose(sharp[:, -1], s(blur(x, 0.3)), rtol=1e-5)
    arr = run(metrics.perturbation_curve, s, x, a, num_steps=2, substrate=jnp.full_like(x, 2.0))
    np.testing.assert_allclose(arr[:, -1], 2.0 * 192, rtol=1e-6)
    # Chunked evaluation is the same computation.
    np.testing.assert_allclose(
        run(metrics.deletion_auc, s, x, a, num_steps=5, chunk_size=2),
        run(metrics.deletion_auc, s, x, a, num_steps=5),
        rtol=1e-6,
    )


def test_blur_against_numpy():
    x = np.asarray(jax.random.uniform(_key(4), (1, 6, 5, 2)), np.float64)
    sigma = 1.3
    ref = np.zeros_like(x)
    for i in range(6):
        for j in range(5):
            wts = np.array(
                [
                    [np.exp(-((i - p) ** 2 + (j - q) ** 2) / (2 * sigma**2)) for q in range(5)]
                    for p in range(6)
                ]
            )
            ref[0, i, j] = np.einsum("pq,pqc->c", wts / wts.sum(), x[0])  # 2-D, not separable.
    np.testing.assert_allclose(blur(jnp.asarray(x, jnp.float32), sigma), ref, rtol=1e-5)
    const = jnp.full((1, 7, 7, 1), 0.3)
    np.testing.assert_allclose(blur(const, 2.0), const, rtol=1e-6)


def test_infidelity():
    w = jnp.linspace(-1.0, 2.0, 16).reshape(4, 4, 1)
    s = linear(w)
    x = jax.random.uniform(_key(5), (2, 4, 4, 1))
    exact = jnp.broadcast_to(w[None], x.shape)  # For linear s, I·w = s(x) − s(x − I).
    val = run(metrics.infidelity, s, x, exact, key=_key(6), num_samples=8)
    assert val.shape == (2,) and val.dtype == jnp.float32
    assert float(jnp.max(val)) < 1e-9
    wrong = run(metrics.infidelity, s, x, -exact, key=_key(6), num_samples=8)
    assert np.all(wrong > 1e-3)
    # φ = 0: INFD = E[(w·I)²] = σ² ‖w‖² (Monte Carlo, 4096 draws).
    zero = run(
        metrics.infidelity,
        s,
        x,
        jnp.zeros_like(x),
        key=_key(7),
        num_samples=4096,
        noise_scale=0.1,
        chunk_size=1024,
    )
    np.testing.assert_allclose(zero, 0.01 * float(jnp.sum(w**2)), rtol=0.1)


def test_completeness_delta():
    w = jnp.linspace(-1.0, 1.0, 12).reshape(2, 2, 3)
    s = linear(w)
    x = jax.random.uniform(_key(8), (3, 2, 2, 3))
    ig = run(attribution.integrated_gradients, s, x, num_steps=8)
    np.testing.assert_allclose(run(metrics.completeness_delta, s, x, ig, 0.0), 0.0, atol=1e-5)
    np.testing.assert_allclose(
        run(metrics.completeness_delta, s, x, ig, jnp.zeros((2, 2, 3))), 0.0, atol=1e-5
    )
    base = jnp.full_like(x, 0.5)
    ig_b = run(attribution.integrated_gradients, s, x, baseline=base, num_steps=4)
    np.testing.assert_allclose(run(metrics.completeness_delta, s, x, ig_b, base), 0.0, atol=1e-5)
    # The plain gradient w misses completeness by Σw − w·x.
    grad = jnp.broadcast_to(w[None], x.shape)
    expected = jnp.sum(w) - s(x)
    np.testing.assert_allclose(
        run(metrics.completeness_delta, s, x, grad, 0.0), expected, rtol=1e-5, atol=1e-6
    )


def test_input_checks():
    s = linear(jnp.ones(4))
    x = jnp.ones((2, 4))
    with pytest.raises(ValueError, match="attribution must have the shape of x"):
        metrics.deletion_auc(s, x, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="substrate must be one of .*got 'noise'"):
        metrics.deletion_auc(s, x, x, substrate="noise")
    with pytest.raises(ValueError, match="blur"):
        metrics.insertion_auc(s, x, x)  # Blur needs images.
    with pytest.raises(ValueError, match="blur_sigma"):
        metrics.deletion_auc(s, x, x, blur_sigma=1.0)
    with pytest.raises(ValueError, match="num_steps"):
        metrics.deletion_auc(s, x, x, num_steps=0)
    with pytest.raises(ValueError, match="score_fn must return one score per example"):
        metrics.deletion_auc(lambda z: z, x, x)
    with pytest.raises(ValueError, match="baseline"):
        metrics.completeness_delta(s, x, x, jnp.ones(3))
    with pytest.raises(ValueError, match="noise_scale"):
        metrics.infidelity(s, x, x, key=_key(), noise_scale=-1.0)
