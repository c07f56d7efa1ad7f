"""Tests for max-sensitivity, random perturbation similarity and attack robustness."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attacks, attribution, metrics
from tests._metrics_util import _key, run


def mlp_params(key: jax.Array, d_in: int = 16, hidden: int = 12, classes: int = 3):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (d_in, hidden)) / math.sqrt(d_in),
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, classes)) / math.sqrt(hidden),
        "b2": jnp.zeros(classes),
    }


def mlp_apply(params, x):
    """A softplus MLP on flattened inputs ``[B, ...] -> [B, K]`` (smooth, non-zero Hessian)."""
    h = jax.nn.softplus(3.0 * (x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"][None]))
    return h / 3.0 @ params["w2"] + params["b2"][None]


def grad_attribution(apply_fn, params, x, label):
    return attribution.gradient(attribution.class_score(apply_fn, params, label), x)


def linear_explain(w):
    score = lambda z: jnp.sum((z * w[None]).reshape(z.shape[0], -1), axis=1)  # noqa: E731
    return lambda z: attribution.gradient(score, z)


def test_max_sensitivity():
    x = jax.random.uniform(_key(1), (3, 4, 4, 2))
    w = jax.random.normal(_key(2), (4, 4, 2))
    zero = run(metrics.max_sensitivity, linear_explain(w), x, key=_key(3))
    np.testing.assert_array_equal(zero, 0.0)  # A linear model's gradient is constant.
    params = mlp_params(_key(4), d_in=32)
    label = jnp.array([0, 1, 2])
    nonlinear = lambda z: grad_attribution(mlp_apply, params, z, label)  # noqa: E731
    sens = run(metrics.max_sensitivity, nonlinear, x, key=_key(3), radius=0.1)
    assert sens.shape == (3,) and sens.dtype == jnp.float32 and np.all(sens > 1e-4)
    # φ(x) = x: the value is max_j ‖δ_j‖ / ‖x‖ with δ ~ U[−r, r]^d, so ‖δ‖ <= r √d and
    # E‖δ‖² = d r² / 3.
    r, d = 0.05, x[0].size
    ident = run(metrics.max_sensitivity, lambda z: z, x, key=_key(5), radius=r, num_samples=4)
    dist = ident * jnp.sqrt(jnp.sum(x**2, axis=(1, 2, 3)))
    assert np.all(dist <= r * math.sqrt(d) + 1e-6) and np.all(dist > 0.8 * r * math.sqrt(d / 3))
    np.testing.assert_array_equal(run(metrics.max_sensitivity, lambda z: 0 * z, x, key=_key()), 0.0)
    chunked = run(metrics.max_sensitivity, nonlinear, x, key=_key(3), radius=0.1, chunk_size=3)
    np.testing.assert_allclose(chunked, sens, rtol=1e-5)


def test_rps_of_an_input_independent_explanation_is_perfect():
    x = jax.random.uniform(_key(6), (2, 8, 8, 1))
    explain = linear_explain(jax.random.normal(_key(7), (8, 8, 1)))
    for name, expected in [("pearson", 1.0), ("ssim", 1.0), ("cosine", 1.0), ("mse", 0.0)]:
        val = run(metrics.random_perturbation_similarity, explain, x, key=_key(8), similarity=name)
        assert val.shape == (2,) and val.dtype == jnp.float32
        np.testing.assert_allclose(val, expected, atol=1e-6, err_msg=name)


def test_rps_values_and_clipping():
    x = jax.random.uniform(_key(9), (3, 8, 8, 1))
    params = mlp_params(_key(10), d_in=64)
    explain = lambda z: grad_attribution(mlp_apply, params, z, jnp.zeros(3, jnp.int32))  # noqa
    kw = dict(key=_key(11), epsilon=0.3, num_draws=4)
    pear = run(metrics.random_perturbation_similarity, explain, x, **kw)
    ssim = run(metrics.random_perturbation_similarity, explain, x, similarity="ssim", **kw)
    assert np.all(pear < 1.0) and np.all(pear > -1.0) and np.all(ssim < 1.0)
    # By hand: the mean over the same draws of pearson(h(x), h(x + δ_n)).
    deltas = jax.random.uniform(_key(11), (4, 1, 8, 8, 1), minval=-0.3, maxval=0.3)

    def by_hand(ds):
        h0 = metrics.heatmap(explain(x))
        sims = [metrics.pearson(h0, metrics.heatmap(explain(jnp.clip(x + d, 0, 1)))) for d in ds]
        return jnp.mean(jnp.stack(sims), axis=0)

    np.testing.assert_allclose(pear, run(by_hand, deltas), rtol=1e-5)
    # A traced radius: one program for several radii, the values of a concrete radius.
    one = jax.jit(
        lambda e: metrics.random_perturbation_similarity(
            explain, x, key=_key(11), epsilon=e, num_draws=4
        )
    )
    np.testing.assert_allclose(one(jnp.float32(0.3)), pear, rtol=1e-5)
    other = run(metrics.random_perturbation_similarity, explain, x, **(kw | {"epsilon": 0.05}))
    np.testing.assert_allclose(one(jnp.float32(0.05)), other, rtol=1e-5)
    assert one._cache_size() == 1 and not np.allclose(other, pear)
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
        metrics.random_perturbation_similarity(explain, x, key=_key(), epsilon=0.0)
    # A function as similarity.
    custom = run(
        metrics.random_perturbation_similarity, explain, x, similarity=metrics.pearson, **kw
    )
    np.testing.assert_allclose(custom, pear, rtol=1e-6)
    # Several similarities at once: the same values as one call each.
    both = run(
        metrics.random_perturbation_similarity, explain, x, similarity=("pearson", "ssim"), **kw
    )
    assert set(both) == {"pearson", "ssim"}
    np.testing.assert_allclose(both["pearson"], pear, rtol=1e-6)
    np.testing.assert_allclose(both["ssim"], ssim, rtol=1e-6)
    with pytest.raises(TypeError, match=r"similarity\[0\] must be a str"):
        metrics.random_perturbation_similarity(explain, x, key=_key(), similarity=(metrics.mse,))
    # Clipping to bounds: φ(z) = [z > 1] is zero on every clipped input, not on raw ones.
    above = lambda z: (z > 1.0).astype(z.dtype)  # noqa: E731
    ones = jnp.ones((2, 8, 8, 1))
    clipped = run(metrics.random_perturbation_similarity, above, ones, similarity="mse", **kw)
    raw = run(
        metrics.random_perturbation_similarity, above, ones, similarity="mse", bounds=None, **kw
    )
    np.testing.assert_array_equal(clipped, 0.0)
    assert np.all(raw > 0.1)
    with pytest.raises(ValueError, match="similarity must be one of .*got 'l1'"):
        run(metrics.random_perturbation_similarity, explain, x, key=_key(), similarity="l1")
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        metrics.random_perturbation_similarity(explain, x, key=None)
    with pytest.raises(ValueError, match="shaped like x"):
        run(metrics.random_perturbation_similarity, lambda z: z[..., 0], x, key=_key())


def test_attack_robustness_with_topk_attack():
    x = jax.random.uniform(_key(12), (3, 4, 4, 1))
    params = mlp_params(_key(13))
    attack = attacks.topk_attack(grad_attribution, epsilon=0.2, num_steps=4, k=4)
    out = run(metrics.attack_robustness, attack, grad_attribution, mlp_apply, params, x, k=4)
    assert set(out) == {
        "topk_intersection",
        "spearman",
        "kendall_tau",
        "center_of_mass_shift",
        "label_kept",
        "attack_score",
    }
    # The attack's own score of the top-k attack is the top-k intersection.
    np.testing.assert_allclose(out["attack_score"], out["topk_intersection"], atol=1e-6)
    for name, v in out.items():
        assert v.shape == (3,) and v.dtype == jnp.float32, name
    assert np.all((out["topk_intersection"] >= 0) & (out["topk_intersection"] <= 1))
    for name in ("spearman", "kendall_tau"):
        assert np.all(np.abs(out[name]) <= 1.0)
    assert np.all(out["center_of_mass_shift"] >= 0)
    assert set(np.unique(out["label_kept"])) <= {0.0, 1.0}
    # The attack reports the same top-k intersection of the clean and attacked maps.
    result = run(attack, mlp_apply, params, x)
    np.testing.assert_allclose(out["topk_intersection"], result.score, atol=1e-6)
    np.testing.assert_array_equal(out["label_kept"], result.label_kept)
    assert float(jnp.min(out["topk_intersection"])) < 1.0  # The attack moved some map.
    # Recomputed from the primitives.
    label = jnp.argmax(mlp_apply(params, x), -1)
    maps = run(
        lambda z, y: attacks.normalized_map(grad_attribution(mlp_apply, params, z, y)),
        jnp.concatenate([x, result.x_adv]),
        jnp.concatenate([label, label]),
    )
    h0, h1 = maps[:3], maps[3:]
    np.testing.assert_allclose(out["kendall_tau"], metrics.kendall_tau(h0, h1), atol=1e-6)
    np.testing.assert_allclose(out["spearman"], metrics.spearman(h0, h1), atol=1e-6)
    np.testing.assert_allclose(
        out["center_of_mass_shift"], metrics.center_of_mass_shift(h0, h1), atol=1e-6
    )


def test_attack_robustness_with_targeted_manipulation_and_checks():
    x = jax.random.uniform(_key(14), (2, 4, 4, 1))
    params = mlp_params(_key(15))
    frame = attacks.frame_target((4, 4))
    attack = attacks.targeted_manipulation(
        grad_attribution, epsilon=0.1, num_steps=2, learning_rate=0.02, target_map=frame
    )

    label = jnp.array([1, 2])
    out = run(metrics.attack_robustness, attack, grad_attribution, mlp_apply, params, x, label, k=3)
    assert all(v.shape == (2,) for v in out.values())
    with pytest.raises(ValueError, match="k must be"):
        run(metrics.attack_robustness, attack, grad_attribution, mlp_apply, params, x, k=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1 and <= 16"):
        run(metrics.attack_robustness, attack, grad_attribution, mlp_apply, params, x, k=17)
    with pytest.raises(ValueError, match="label"):
        run(
            metrics.attack_robustness,
            attack,
            grad_attribution,
            mlp_apply,
            params,
            x,
            jnp.zeros(3, jnp.int32),
            k=2,
        )
