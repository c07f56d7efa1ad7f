"""Tests for the optimisation-based explainers: RelEx masks and regularized adversarial maps."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attacks, data
from jaxinterp.attribution import (
    gaussian_smoothing,
    l1_norm,
    regularized_adversarial,
    relex,
    soft_threshold,
    total_variation,
)
from tests._fitting import fit_digits_mlp

NUM_CLASSES = 10
NUM_EXAMPLES = 16
EPS = 0.1
STEPS = 10


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="rbg")  # XLA:CPU compiles threefry slowly.


def _jit(fun, **kwargs):
    return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


@pytest.fixture(scope="module")
def setup(data_dir):
    """A softplus(β=3) MLP trained for 200 full-batch Adam steps on digits, test examples."""
    test = data.load_split("digits", "test", data_dir=data_dir)
    _, model, params = fit_digits_mlp(data_dir, num_steps=200, key=_key(0))
    x = jnp.asarray(test.images[:NUM_EXAMPLES])
    y = jnp.asarray(test.labels[:NUM_EXAMPLES])
    assert float(jnp.mean(jnp.argmax(model.apply_fn(params, x), -1) == y)) > 0.9
    return types.SimpleNamespace(apply_fn=model.apply_fn, params=params, x=x, y=y)


def _prob(s, x):
    """``p_y(x)`` per example."""
    p = jax.nn.softmax(s.apply_fn(s.params, x), axis=-1)
    return jnp.take_along_axis(p, s.y[:, None], axis=1)[:, 0]


# ---------------------------------------------------------------------------------------------
# RelEx


@pytest.fixture(scope="module")
def relex_run(setup):
    explain = _jit(relex(num_iterations=30, num_samples=8), static_argnums=0)
    mask = explain(setup.apply_fn, setup.params, setup.x, setup.y, key=_key(1))
    return explain, mask


def test_relex_mask_shape_range_and_determinism(setup, relex_run):
    s, (explain, mask) = setup, relex_run
    assert mask.shape == s.x.shape and mask.dtype == s.x.dtype
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    np.testing.assert_array_equal(explain(s.apply_fn, s.params, s.x, s.y, key=_key(1)), mask)
    other = explain(s.apply_fn, s.params, s.x, s.y, key=_key(2))
    assert float(jnp.max(jnp.abs(other - mask))) > 0
    # Each example has its own mask and key: a sub-batch gives the same masks.
    head = explain(s.apply_fn, s.params, s.x[:3], s.y[:3], key=_key(1))
    np.testing.assert_allclose(head, mask[:3], atol=1e-4)
    # target=None explains the predicted class (= y here, the model is accurate on these).
    pred = jnp.argmax(s.apply_fn(s.params, s.x[:3]), -1)
    np.testing.assert_array_equal(
        explain(s.apply_fn, s.params, s.x[:3], None, key=_key(1)),
        explain(s.apply_fn, s.params, s.x[:3], pred, key=_key(1)),
    )


def test_relex_mask_is_faithful(setup, relex_run):
    s, (_, mask) = setup, relex_run
    # Keeping: x ⊙ m keeps p_y far better than a random mask of the same mean.
    mean = jnp.mean(mask, axis=(1, 2, 3), keepdims=True)
    r = jax.random.uniform(_key(5), s.x.shape)
    r = jnp.clip(r * mean / jnp.mean(r, axis=(1, 2, 3), keepdims=True), 0.0, 1.0)
    p_relex, p_random = _prob(s, s.x * mask), _prob(s, s.x * r)
    assert float(p_relex.mean()) > float(p_random.mean()) + 0.3
    assert float(jnp.mean(p_relex > p_random)) >= 0.8
    # Deletion: zeroing the 16 top-mask pixels drops p_y more than zeroing 16 random ones.
    flat = mask.reshape(NUM_EXAMPLES, -1)
    top = jnp.argsort(-flat, axis=1)[:, :16]
    keep_top = jnp.ones_like(flat).at[jnp.arange(NUM_EXAMPLES)[:, None], top].set(0.0)
    rand = jax.random.permutation(_key(3), flat.shape[1])[:16]
    keep_rand = jnp.ones_like(flat).at[:, rand].set(0.0)
    p_del_top = _prob(s, s.x * keep_top.reshape(s.x.shape))
    p_del_rand = _prob(s, s.x * keep_rand.reshape(s.x.shape))
    assert float(p_del_top.mean()) < float(p_del_rand.mean()) - 0.3


def test_relex_per_channel_mask_on_plain_jax_model():
    def apply_fn(params, x):  # [B, 4, 4, 3] -> [B, 2]
        return x.reshape(x.shape[0], -1) @ params

    params = jax.random.normal(_key(0), (48, 2))
    x = jax.random.uniform(_key(1), (2, 4, 4, 3))
    mask = relex(num_iterations=3, num_samples=2)(apply_fn, params, x, 1, key=_key(2))
    assert mask.shape == (2, 4, 4, 3)
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0


def test_relex_chunks_of_copies_give_the_mask_of_one_pass():
    """2 · 20 · 16 = 640 inputs a step: on CPU ``None`` runs passes of 8 copies (a scan);
    1, 3 (with a remainder) and all 16 copies a pass give the same mask in float64."""
    assert jax.default_backend() == "cpu"

    def apply_fn(params, x):  # [B, 4, 4, 3] -> [B, 3], smooth
        return jnp.tanh(x.reshape(x.shape[0], -1) @ params)

    with jax.enable_x64(True):
        params = jax.random.normal(_key(0), (48, 3), jnp.float64)
        x = jax.random.uniform(_key(1), (20, 4, 4, 3), jnp.float64)

        def run(chunk_size):
            explain = relex(num_iterations=4, num_samples=16, chunk_size=chunk_size)
            fn = jax.jit(lambda p, v: explain(apply_fn, p, v, None, key=_key(2)))
            return fn, np.asarray(fn(params, x))

        auto, masks = run(None)
        one_pass, whole = run(16)
        # The iterations are one scan; passes over chunks of copies are a second one.
        assert str(jax.make_jaxpr(auto)(params, x)).count("scan[") == 2
        assert str(jax.make_jaxpr(one_pass)(params, x)).count("scan[") == 1
        for c in (1, 3):
            np.testing.assert_allclose(run(c)[1], whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(masks, whole, rtol=0, atol=1e-12)
    assert 0.05 < np.mean((whole > 0) & (whole < 1)), "the masks should not be all clipped"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_iterations=0), "num_iterations"),
        (dict(num_samples=1.5), "num_samples"),
        (dict(lambda1=-1.0), "lambda1"),
        (dict(lambda2=float("nan")), "lambda2"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(momentum=1.0), "momentum"),
        (dict(noise_fraction=-0.1), "noise_fraction"),
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_relex_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        relex(**kwargs)


def test_relex_bad_call_arguments_raise(setup):
    s, explain = setup, relex(num_iterations=1, num_samples=1)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 10\)"):
        explain(s.apply_fn, s.params, s.x[:2], 10, key=_key(0))
    with pytest.raises(ValueError, match="target must be"):
        explain(s.apply_fn, s.params, s.x[:2], jnp.zeros((3,), jnp.int32), key=_key(0))
    with pytest.raises(TypeError, match="floating"):
        explain(s.apply_fn, s.params, jnp.zeros((2, 8, 8, 1), jnp.int32), 0, key=_key(0))


# ---------------------------------------------------------------------------------------------
# Regularized adversarial explanations


def _normalized_tv(e):
    return total_variation(e) / (l1_norm(e) + 1e-12)


def _explain(**kwargs):
    fn = regularized_adversarial(epsilon=EPS, num_steps=STEPS, return_delta=True, **kwargs)
    return _jit(fn, static_argnums=0)


def test_regularized_adversarial_is_smoother_than_pgd(setup):
    s = setup
    pgd = _jit(attacks.pgd(epsilon=EPS, num_steps=STEPS, random_start=False), static_argnums=0)
    x_pgd = pgd(s.apply_fn, s.params, s.x, s.y)
    e_pgd = jnp.sum(jnp.abs(x_pgd - s.x), axis=-1, keepdims=True)
    # Without smoothing or penalties it is exactly PGD (same default step size 2.5 ε / T).
    e_plain, _ = _explain(smoothing_sigma=None)(s.apply_fn, s.params, s.x, s.y)
    np.testing.assert_allclose(e_plain, e_pgd, atol=1e-6)

    e, delta = _explain(smoothing_sigma=1.0)(s.apply_fn, s.params, s.x, s.y)
    assert e.shape == s.x.shape and delta.shape == s.x.shape  # Like x (the contract).
    np.testing.assert_array_equal(e, jnp.abs(delta))
    assert float(jnp.max(jnp.abs(delta))) <= EPS + 1e-6
    x_adv = s.x + delta
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(total_variation(e).mean()) < float(total_variation(e_pgd).mean())
    assert float(_normalized_tv(e).mean()) < float(_normalized_tv(e_pgd).mean())
    # It is still an attack: the true-class probability drops.
    assert float(_prob(s, x_adv).mean()) < float(_prob(s, s.x).mean()) - 0.1


def test_regularized_adversarial_pluggable_parts(setup):
    s = setup
    args = (s.apply_fn, s.params, s.x[:8], s.y[:8])
    e_base, _ = _explain()(*args)
    e_l1, d_l1 = _explain(l1=10.0)(*args)
    assert float(l1_norm(e_l1).mean()) < 0.2 * float(l1_norm(e_base).mean())
    # A custom regularizer enters the objective exactly like the built-in penalty.
    e_custom, d_custom = _explain(regularizers=[lambda d: 10.0 * l1_norm(d)])(*args)
    np.testing.assert_allclose(d_custom, d_l1, atol=1e-6)
    # A custom smoothing replaces the Gaussian one: zeroing the gradient freezes δ at 0.
    e_frozen, _ = _explain(smoothing=jnp.zeros_like)(*args)
    assert float(jnp.max(e_frozen)) == 0.0
    # Without return_delta, only the map comes back.
    e_only = regularized_adversarial(epsilon=EPS, num_steps=1)(*args)
    assert e_only.shape == s.x[:8].shape
    with pytest.raises(ValueError, match="one penalty per example"):
        _explain(regularizers=[jnp.sum])(*args)


def test_regularized_adversarial_l2_without_parts_is_l2_pgd(setup):
    s = setup
    pgd = attacks.pgd(epsilon=1.0, num_steps=STEPS, norm="l2", random_start=False, loss="margin")
    x_pgd = _jit(pgd, static_argnums=0)(s.apply_fn, s.params, s.x, s.y)
    fn = regularized_adversarial(
        epsilon=1.0, num_steps=STEPS, norm="l2", loss="margin", smoothing_sigma=None,
        return_delta=True,
    )  # fmt: skip
    _, delta = _jit(fn, static_argnums=0)(s.apply_fn, s.params, s.x, s.y)
    np.testing.assert_allclose(s.x + delta, x_pgd, atol=1e-5)


def test_regularized_adversarial_l2_proximal_map_is_continuous_sparse_and_an_attack(setup):
    s = setup
    kw = dict(epsilon=1.0, num_steps=STEPS, norm="l2", loss="margin", return_delta=True)
    e, delta = _explain_kw(**kw, l1=0.1, proximal_l1=True)(s.apply_fn, s.params, s.x, s.y)
    norms = jnp.sqrt(jnp.sum(delta**2, axis=(1, 2, 3)))
    assert float(norms.max()) <= 1.0 + 1e-5  # in the L2 ball
    x_adv = s.x + delta
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    # The proximal step sets coordinates exactly to zero; the L1 gradient does not (its
    # zeros are the pixels the bounds hold at 0: dark pixels that δ may not lower).
    zeros = float(jnp.mean(delta == 0.0))
    _, d_grad = _explain_kw(**kw, l1=0.1)(s.apply_fn, s.params, s.x, s.y)
    assert float(jnp.mean(d_grad == 0.0)) + 0.2 < zeros < 1.0
    # Continuous: many distinct magnitudes, where signed L∞ steps give a handful.
    assert len(np.unique(np.round(np.asarray(e[e > 0]), 6))) > 100
    _, d_sign = _explain(smoothing_sigma=None)(s.apply_fn, s.params, s.x, s.y)
    assert len(np.unique(np.round(np.abs(np.asarray(d_sign)), 6))) < 20
    # Still an attack: the true-class probability drops.
    assert float(_prob(s, x_adv).mean()) < float(_prob(s, s.x).mean()) - 0.1
    # λ1 = 0: the proximal step is the identity.
    _, d0 = _explain_kw(**kw, proximal_l1=True)(s.apply_fn, s.params, s.x, s.y)
    _, d1 = _explain_kw(**kw)(s.apply_fn, s.params, s.x, s.y)
    np.testing.assert_array_equal(d0, d1)


def _explain_kw(**kwargs):
    return _jit(regularized_adversarial(**kwargs), static_argnums=0)


def test_soft_threshold():
    v = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(soft_threshold(v, 1.0), [-1.0, 0.0, 0.0, 0.0, 1.0])


def test_gaussian_smoothing():
    smooth = gaussian_smoothing(1.0)
    g = jnp.zeros((1, 7, 7, 2)).at[0, 3, 3, 0].set(1.0)
    out = smooth(g)
    np.testing.assert_allclose(out[0, 2, 3, 0], out[0, 4, 3, 0], rtol=1e-6)  # Symmetric.
    np.testing.assert_allclose(out[0, 3, 2, 0], out[0, 2, 3, 0], rtol=1e-6)
    assert float(out[..., 1].max()) == 0.0  # Channels stay separate.
    assert float(out[0, 3, 3, 0]) == float(out.max()) < 1.0
    np.testing.assert_allclose(smooth(jnp.ones((2, 5, 6, 1))), 1.0, rtol=1e-6)  # Averages.
    with pytest.raises(ValueError, match="smoothing_sigma"):
        gaussian_smoothing(0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epsilon=0.0, num_steps=5), "epsilon"),
        (dict(epsilon=2.0, num_steps=5), "epsilon"),
        (dict(epsilon=0.1, num_steps=0), "num_steps"),
        (dict(epsilon=0.1, num_steps=5, step_size=-1.0), "step_size"),
        (dict(epsilon=0.1, num_steps=5, l1=-1.0), "l1"),
        (dict(epsilon=0.1, num_steps=5, tv=float("inf")), "tv"),
        (dict(epsilon=0.1, num_steps=5, smoothing_sigma=-1.0), "smoothing_sigma"),
        (dict(epsilon=0.1, num_steps=5, regularizers=[1.0]), "regularizers"),
        (dict(epsilon=0.1, num_steps=5, smoothing=3), "smoothing"),
        (dict(epsilon=0.1, num_steps=5, loss="hinge"), "loss"),
        (dict(epsilon=0.1, num_steps=5, bounds=(1.0, 0.0)), "bounds"),
        (dict(epsilon=0.1, num_steps=5, norm="l1"), "norm"),
        (dict(epsilon=0.1, num_steps=5, proximal_l1="yes"), "proximal_l1"),
    ],
)
def test_regularized_adversarial_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        regularized_adversarial(**kwargs)
