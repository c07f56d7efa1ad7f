"""Tests for the attacks on explanations (top-k, targeted manipulation) and softplus surrogates."""

from __future__ import annotations

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import data, models
from jaxinterp.attacks import (
    frame_target,
    normalized_map,
    targeted_manipulation,
    topk_attack,
    topk_intersection,
)
from jaxinterp.attribution import class_score
from jaxinterp.attribution._gradient import gradient
from jaxinterp.models._surrogate import softplus_surrogate
from tests._fitting import fit_digits, fit_digits_mlp

NUM_CLASSES = 10
NUM_EXAMPLES = 16
EPS = 0.1  # Digits are 8x8x1 in [0, 1].
K = 8
TOL = 1e-6


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="rbg")  # XLA:CPU compiles threefry slowly.


def _jit(fun, **kwargs):
    return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


def grad_attribution(apply_fn, params, x, label):
    """Saliency: the input gradient of the explained class's logit."""
    return gradient(class_score(apply_fn, params, label), x)


@pytest.fixture(scope="module")
def setup(data_dir):
    """A softplus(β=3) MLP trained for 200 full-batch Adam steps on digits, test examples."""
    test = data.load_split("digits", "test", data_dir=data_dir)
    module, model, params = fit_digits_mlp(data_dir, num_steps=200, key=_key(0))
    x = jnp.asarray(test.images[:NUM_EXAMPLES])
    pred = jnp.argmax(model.apply_fn(params, x), -1)
    assert float(jnp.mean(pred == jnp.asarray(test.labels[:NUM_EXAMPLES]))) > 0.9
    return types.SimpleNamespace(module=module, model=model, params=params, x=x, pred=pred)


def _clean_map(s):
    return normalized_map(grad_attribution(s.model.apply_fn, s.params, s.x, s.pred))


def _check_threat_model(x_adv, x):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float(jnp.max(jnp.abs(x_adv - x))) <= EPS + TOL
    assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0


def test_maps_and_topk_intersection():
    a = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2) - 10.0
    h = normalized_map(a)
    assert h.shape == (2, 4, 4)
    summed = jnp.abs(a).sum(-1)
    np.testing.assert_allclose(h, summed / summed.sum((1, 2), keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(h.sum((1, 2)), 1.0, rtol=1e-6)
    assert float(jnp.max(normalized_map(jnp.zeros((1, 3, 3, 1))))) == 0.0
    np.testing.assert_allclose(topk_intersection(h, h, 3), 1.0)
    ramp = jnp.arange(16.0).reshape(1, 4, 4)
    np.testing.assert_allclose(topk_intersection(ramp, -ramp, 4), 0.0)  # Disjoint top-4.
    np.testing.assert_allclose(topk_intersection(ramp, ramp.at[0, 3, 3].set(-1.0), 4), 0.75)


def test_frame_target():
    t = frame_target((8, 8), width=1)
    assert t.shape == (8, 8)
    np.testing.assert_allclose(float(t.sum()), 1.0, rtol=1e-6)
    assert float(t[1:-1, 1:-1].max()) == 0.0 and float(t[0].min()) > 0 and float(t[:, -1].min()) > 0
    np.testing.assert_allclose(t[0, 0], 1.0 / 28, rtol=1e-6)
    with pytest.raises(ValueError, match="width"):
        frame_target((8, 8), width=4)
    with pytest.raises(ValueError, match="shape"):
        frame_target((8,))


def test_topk_attack_keeps_label_and_beats_noise(setup):
    s = setup
    attack = _jit(topk_attack(grad_attribution, epsilon=EPS, num_steps=10, k=K), static_argnums=0)
    res = attack(s.model.apply_fn, s.params, s.x)
    _check_threat_model(res.x_adv, s.x)
    adv_pred = jnp.argmax(s.model.apply_fn(s.params, res.x_adv), -1)
    assert bool(jnp.all(adv_pred == s.pred)) and bool(jnp.all(res.label_kept))
    h0 = _clean_map(s)
    h_adv = normalized_map(grad_attribution(s.model.apply_fn, s.params, res.x_adv, s.pred))
    inter_adv = topk_intersection(h0, h_adv, K)
    np.testing.assert_allclose(res.score, inter_adv)
    noise = EPS * jnp.sign(jax.random.normal(_key(7), s.x.shape))
    x_noise = jnp.clip(s.x + noise, 0.0, 1.0)
    h_noise = normalized_map(grad_attribution(s.model.apply_fn, s.params, x_noise, s.pred))
    inter_noise = topk_intersection(h0, h_noise, K)
    assert float(inter_adv.mean()) < float(inter_noise.mean())
    assert float(inter_adv.mean()) < 1.0


def test_topk_attack_on_a_softplus_cnn_trained_on_digits(data_dir):
    module = models.LeNet(
        num_classes=NUM_CLASSES, channels=(8, 8, 16, 16), hidden=32, activation="softplus", beta=3.0
    )
    _, model, params = fit_digits(data_dir, module, num_steps=150, key=_key(0), fast_compile=False)
    test = data.load_split("digits", "test", data_dir=data_dir)
    x = jnp.asarray(test.images[:NUM_EXAMPLES])
    pred = jnp.argmax(model.apply_fn(params, x), -1)
    assert float(jnp.mean(pred == jnp.asarray(test.labels[:NUM_EXAMPLES]))) > 0.85
    attack = jax.jit(
        topk_attack(grad_attribution, epsilon=EPS, num_steps=10, k=K), static_argnums=0
    )
    res = attack(model.apply_fn, params, x)
    _check_threat_model(res.x_adv, x)
    assert bool(jnp.all(jnp.argmax(model.apply_fn(params, res.x_adv), -1) == pred))
    h0 = normalized_map(grad_attribution(model.apply_fn, params, x, pred))
    noise = EPS * jnp.sign(jax.random.normal(_key(7), x.shape))
    x_noise = jnp.clip(x + noise, 0.0, 1.0)
    h_noise = normalized_map(grad_attribution(model.apply_fn, params, x_noise, pred))
    assert float(res.score.mean()) < float(topk_intersection(h0, h_noise, K).mean())


def test_targeted_manipulation_moves_map_toward_target(setup):
    s = setup
    attack = _jit(
        targeted_manipulation(grad_attribution, epsilon=EPS, num_steps=20, learning_rate=0.01),
        static_argnums=0,
    )
    h_t = frame_target((8, 8))
    res = attack(s.model.apply_fn, s.params, s.x, h_target=h_t)
    _check_threat_model(res.x_adv, s.x)
    assert bool(jnp.all(res.label_kept))
    assert bool(jnp.all(jnp.argmax(s.model.apply_fn(s.params, res.x_adv), -1) == s.pred))
    h_adv = normalized_map(grad_attribution(s.model.apply_fn, s.params, res.x_adv, s.pred))
    dist_adv = jnp.sum(jnp.square(h_adv - h_t[None]), axis=(1, 2))
    dist_clean = jnp.sum(jnp.square(_clean_map(s) - h_t[None]), axis=(1, 2))
    np.testing.assert_allclose(res.score, dist_adv, rtol=1e-4)
    assert float(dist_adv.mean()) < float(dist_clean.mean())
    # The target must be map-shaped ([H, W] or [B, H, W]).
    with pytest.raises(ValueError, match="h_target"):
        attack(s.model.apply_fn, s.params, s.x, h_target=jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="needs a target map"):
        attack(s.model.apply_fn, s.params, s.x)


def _max_map(a):
    h = jnp.sum(jnp.abs(a), axis=-1)
    return h / jnp.max(h, axis=(1, 2), keepdims=True)


def test_targeted_manipulation_reference_settings(setup):
    # RobustAGA's protocol: max-normalised maps against a frame of ones, the mean squared
    # logit difference, Adam at 4ε/T.
    s = setup
    steps = 20
    attack = _jit(
        targeted_manipulation(
            grad_attribution, epsilon=EPS, num_steps=steps, learning_rate=4 * EPS / steps,
            normalization="max", output="logits",
        ),
        static_argnums=0,
    )  # fmt: skip
    frame = frame_target((8, 8))
    res = attack(s.model.apply_fn, s.params, s.x, h_target=frame)
    _check_threat_model(res.x_adv, s.x)
    assert bool(jnp.all(res.label_kept))
    ones = frame / jnp.max(frame)  # the target with its maximum at 1
    h_adv = _max_map(grad_attribution(s.model.apply_fn, s.params, res.x_adv, s.pred))
    h0 = _max_map(grad_attribution(s.model.apply_fn, s.params, s.x, s.pred))
    dist_adv = jnp.sum(jnp.square(h_adv - ones[None]), axis=(1, 2))
    np.testing.assert_allclose(res.score, dist_adv, rtol=1e-4)
    assert float(dist_adv.mean()) < float(jnp.sum(jnp.square(h0 - ones[None]), (1, 2)).mean())
    # Another normalisation is another objective: the search ends elsewhere.
    other = targeted_manipulation(
        grad_attribution, epsilon=EPS, num_steps=steps, learning_rate=4 * EPS / steps
    )
    res_sum = _jit(other, static_argnums=0)(s.model.apply_fn, s.params, s.x, h_target=frame)
    assert float(jnp.max(jnp.abs(res_sum.x_adv - res.x_adv))) > 1e-3
    for kwargs, match in [({"normalization": "l2"}, "normalization"), ({"output": "p"}, "output")]:
        with pytest.raises(ValueError, match=match):
            targeted_manipulation(
                grad_attribution, epsilon=EPS, num_steps=2, learning_rate=0.1, **kwargs
            )


def test_softplus_surrogate(setup):
    s = setup
    relu_module = s.module.clone(activation="relu")
    relu_apply = models.from_linen(relu_module).apply_fn
    twin = softplus_surrogate(relu_module, beta=100.0)
    assert twin.name == "mlp_softplus"
    # Same parameter tree: the twin initialises to the same structure and shapes.
    twin_params = twin.init(_key(1), s.x[:1])
    assert jax.tree.structure(twin_params) == jax.tree.structure(s.params)
    shapes = jax.tree.map(jnp.shape, twin_params)
    assert shapes == jax.tree.map(jnp.shape, s.params)
    logits_relu = relu_apply(s.params, s.x)
    np.testing.assert_allclose(twin.apply_fn(s.params, s.x), logits_relu, atol=0.05)

    # Input Hessian-vector product of the explained logit: zero for ReLU, not for the twin.
    def hvp(apply_fn):
        score = class_score(apply_fn, s.params, s.pred)
        v = jax.random.normal(_key(2), s.x.shape)
        grad_fn = jax.grad(lambda z: jnp.sum(score(z)))
        return jax.jvp(grad_fn, (s.x,), (v,))[1]

    assert float(jnp.max(jnp.abs(hvp(relu_apply)))) == 0.0
    assert float(jnp.max(jnp.abs(hvp(twin.apply_fn)))) > 1e-3

    # Attacking the ReLU model needs the twin: without it the attack cannot move.
    attack = _jit(
        topk_attack(grad_attribution, epsilon=EPS, num_steps=3, k=K),
        static_argnums=(0,),
        static_argnames=("surrogate_apply_fn",),
    )
    stuck = attack(relu_apply, s.params, s.x)
    np.testing.assert_array_equal(stuck.x_adv, s.x)
    moved = attack(relu_apply, s.params, s.x, surrogate_apply_fn=twin.apply_fn)
    assert bool(jnp.all(moved.label_kept))
    assert float(jnp.mean(moved.score)) < 1.0

    with pytest.raises(TypeError, match="Module"):
        softplus_surrogate(object(), beta=10.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="activation"):
        softplus_surrogate(nn.Dense(3), beta=10.0)
    with pytest.raises(ValueError, match="beta"):
        softplus_surrogate(relu_module, beta=0.0)


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [
        (topk_attack, dict(epsilon=0.0, num_steps=5, k=4), "epsilon"),
        (topk_attack, dict(epsilon=2.0, num_steps=5, k=4), "epsilon"),
        (topk_attack, dict(epsilon=0.1, num_steps=0, k=4), "num_steps"),
        (topk_attack, dict(epsilon=0.1, num_steps=5, k=0), "k must"),
        (topk_attack, dict(epsilon=0.1, num_steps=5, k=2.5), "k must"),
        (topk_attack, dict(epsilon=0.1, num_steps=5, k=4, step_size=-1.0), "step_size"),
        (targeted_manipulation, dict(epsilon=0.1, num_steps=5, learning_rate=0.0), "learning"),
        (
            targeted_manipulation,
            dict(epsilon=0.1, num_steps=5, learning_rate=0.1, gamma=1.5),
            "gamma",
        ),
        (
            targeted_manipulation,
            dict(epsilon=0.1, num_steps=5, learning_rate=0.1, bounds=(1, 0)),
            "bounds",
        ),
    ],
)
def test_bad_hyperparameters_raise(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(grad_attribution, **kwargs)


def test_bad_call_arguments_raise(setup):
    s = setup
    attack = topk_attack(grad_attribution, epsilon=EPS, num_steps=1, k=65)
    with pytest.raises(ValueError, match="k=65 exceeds"):
        attack(s.model.apply_fn, s.params, s.x[:2])
    attack = topk_attack(grad_attribution, epsilon=EPS, num_steps=1, k=4)
    with pytest.raises(ValueError, match="outside bounds"):
        attack(s.model.apply_fn, s.params, s.x[:2] + 2.0)
    with pytest.raises(ValueError, match="label"):
        attack(s.model.apply_fn, s.params, s.x[:2], jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="attribution_fn"):
        topk_attack(None, epsilon=EPS, num_steps=1, k=4)  # type: ignore[arg-type]
