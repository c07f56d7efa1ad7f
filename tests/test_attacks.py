"""Tests for jaxinterp.attacks: threat-model constraints, strength, jit and gradient isolation."""

from __future__ import annotations

import functools
import itertools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxinterp import attacks, data
from tests._fitting import fit_digits_mlp

NUM_CLASSES = 10
EPS = {"linf": 0.1, "l2": 1.0}  # Digits are 8x8x1 in [0, 1].
NUM_STEPS = 10
NUM_EXAMPLES = 32
TOL = 1e-6


def _key(seed: int = 0) -> jax.Array:
    # XLA:CPU compiles threefry slowly; "rbg" keys keep the many small compiles here cheap.
    # test_jit_no_recompilation covers the default (threefry) keys.
    return jax.random.key(seed, impl="rbg")


def _jit(fun, **kwargs):
    # Tests are compile-bound on CPU; XLA's backend optimisations are not worth it here.
    return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


def _targets(y: jax.Array) -> jax.Array:
    return (y + 3) % NUM_CLASSES


def _mean_ce(apply_fn, params, x, y) -> jax.Array:
    return jnp.mean(attacks.ce_loss(apply_fn(params, x), y))


@pytest.fixture(scope="module")
def setup(data_dir):
    """An MLP trained for 100 full-batch Adam steps on digits, and test examples."""
    test = data.load_split("digits", "test", data_dir=data_dir)
    _, model, params = fit_digits_mlp(data_dir, num_steps=100, key=_key(0))
    x = jnp.asarray(test.images[:NUM_EXAMPLES])
    y = jnp.asarray(test.labels[:NUM_EXAMPLES])
    assert float(jnp.mean(jnp.argmax(model.apply_fn(params, x), -1) == y)) > 0.9
    return types.SimpleNamespace(apply_fn=model.apply_fn, params=params, x=x, y=y)


CONFIGS = [
    ("pgd", norm, loss, targeted, rs)
    for norm, loss, targeted, rs in itertools.product(
        attacks.NORMS, ("ce", "margin"), (False, True), (True, False)
    )
] + [
    ("fgsm", norm, loss, targeted, False)
    for norm, loss, targeted in itertools.product(attacks.NORMS, ("ce", "margin"), (False, True))
]


def _make(method, norm, loss, targeted, random_start):
    if method == "fgsm":
        return attacks.fgsm(epsilon=EPS[norm], norm=norm, loss=loss, targeted=targeted)
    return attacks.pgd(
        epsilon=EPS[norm],
        num_steps=NUM_STEPS,
        norm=norm,
        random_start=random_start,
        loss=loss,
        targeted=targeted,
    )


def _id(config) -> str:
    return "-".join(map(str, config))


@pytest.fixture(scope="module")
def adv(setup):
    """``{config id: x_adv}`` for every config on ``setup``, plus ``sub5-{norm}``: PGD without
    random start on the first 5 examples alone. One jit for all: a single XLA compile of all
    attacks is ~3x cheaper on CPU than one compile per attack."""
    built = {_id(c): (_make(*c), c[3]) for c in CONFIGS}

    @_jit
    def run_all(params, x, y, key):
        out = {
            name: attack(setup.apply_fn, params, x, _targets(y) if targeted else y, key=key)
            for name, (attack, targeted) in built.items()
        }
        for norm in attacks.NORMS:
            attack = _make("pgd", norm, "ce", False, random_start=False)
            out[f"sub5-{norm}"] = attack(setup.apply_fn, params, x[:5], y[:5])
        return out

    return run_all(setup.params, setup.x, setup.y, _key(1))


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_stays_in_ball_and_bounds(setup, adv, config):
    x_adv = adv[_id(config)]
    norm = config[1]
    assert x_adv.shape == setup.x.shape and x_adv.dtype == setup.x.dtype
    assert bool(jnp.all(jnp.isfinite(x_adv)))
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    delta = (x_adv - setup.x).reshape(NUM_EXAMPLES, -1)
    size = jnp.max(jnp.abs(delta), axis=1) if norm == "linf" else jnp.linalg.norm(delta, axis=1)
    assert float(size.max()) <= EPS[norm] + TOL
    # The attack is not trivially the identity: every example moved most of the way out.
    assert float(size.min()) > 0.5 * EPS[norm]


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("norm", attacks.NORMS)
def test_pgd_increases_loss_and_fools_model(setup, adv, norm, loss):
    loss_fn = attacks.get_loss(loss)
    logits_clean = setup.apply_fn(setup.params, setup.x)
    logits_adv = setup.apply_fn(setup.params, adv[f"pgd-{norm}-{loss}-False-True"])
    assert float(loss_fn(logits_adv, setup.y).mean()) > float(loss_fn(logits_clean, setup.y).mean())
    acc_clean = float(jnp.mean(jnp.argmax(logits_clean, -1) == setup.y))
    acc_adv = float(jnp.mean(jnp.argmax(logits_adv, -1) == setup.y))
    assert acc_adv < acc_clean - 0.3


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("norm", attacks.NORMS)
def test_targeted_pgd_moves_toward_target(setup, adv, norm, loss):
    t = _targets(setup.y)
    logits_clean = setup.apply_fn(setup.params, setup.x)
    logits_adv = setup.apply_fn(setup.params, adv[f"pgd-{norm}-{loss}-True-True"])
    p_clean = jnp.take_along_axis(jax.nn.softmax(logits_clean), t[:, None], axis=1)
    p_adv = jnp.take_along_axis(jax.nn.softmax(logits_adv), t[:, None], axis=1)
    assert float(p_adv.mean()) > float(p_clean.mean()) + 0.1
    loss_fn = attacks.get_loss(loss)
    assert float(loss_fn(logits_adv, t).mean()) < float(loss_fn(logits_clean, t).mean())
    assert float(jnp.mean(jnp.argmax(logits_adv, -1) == t)) > 0.2  # Clean hit rate is ~0.


@pytest.mark.parametrize("norm", attacks.NORMS)
def test_pgd_at_least_as_strong_as_fgsm(setup, adv, norm):
    ce = functools.partial(_mean_ce, setup.apply_fn, setup.params, y=setup.y)
    ce_clean = float(ce(setup.x))
    ce_fgsm = float(ce(adv[f"fgsm-{norm}-ce-False-False"]))
    ce_pgd = float(ce(adv[f"pgd-{norm}-ce-False-True"]))
    assert ce_clean < ce_fgsm <= ce_pgd


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("norm", attacks.NORMS)
def test_fgsm_matches_formula(setup, adv, norm, targeted):
    y = _targets(setup.y) if targeted else setup.y
    sign = -1.0 if targeted else 1.0

    @_jit
    def reference(x):
        g = jax.grad(lambda x: sign * jnp.sum(attacks.ce_loss(setup.apply_fn(setup.params, x), y)))(
            x
        )
        if norm == "linf":
            step = jnp.sign(g)
        else:
            step = g / jnp.linalg.norm(g.reshape(NUM_EXAMPLES, -1), axis=1)[:, None, None, None]
        return jnp.clip(x + EPS[norm] * step, 0.0, 1.0)

    got = adv[f"fgsm-{norm}-ce-{targeted}-False"]
    np.testing.assert_allclose(got, reference(setup.x), atol=1e-5)


@pytest.mark.parametrize("norm", attacks.NORMS)
def test_examples_are_independent(adv, norm):
    # Summed (not averaged) losses and per-example steps and projections: a sub-batch gives
    # the same adversarial examples as the full batch.
    full = adv[f"pgd-{norm}-ce-False-False"]
    np.testing.assert_allclose(adv[f"sub5-{norm}"], full[:5], atol=1e-5)


@pytest.mark.parametrize("norm", attacks.NORMS)
def test_zero_gradient_and_random_start(norm):
    # Logits independent of x: every gradient is zero, so x_adv is the (clipped) start.
    def apply_fn(params, x):
        return jnp.broadcast_to(params, (x.shape[0], NUM_CLASSES))

    params = jnp.arange(NUM_CLASSES, dtype=jnp.float32)
    x = jnp.full((256, 8, 8, 1), 0.5)
    y = jnp.zeros((256,), jnp.int32)
    eps = 0.3 if norm == "linf" else 2.0
    fixed = attacks.pgd(epsilon=eps, num_steps=3, norm=norm, random_start=False)
    rand = attacks.pgd(epsilon=eps, num_steps=3, norm=norm, bounds=None)

    @_jit
    def both(params, x, y, key):
        keys = jax.random.split(key)
        return (
            fixed(apply_fn, params, x, y),
            rand(apply_fn, params, x, y, key=keys[0]),
            rand(apply_fn, params, x, y, key=keys[1]),
        )

    x_fixed, x_rand, x_other = both(params, x, y, _key(2))
    np.testing.assert_array_equal(x_fixed, x)
    delta = (x_rand - x).reshape(256, -1)
    assert bool(jnp.all(jnp.isfinite(delta)))
    if norm == "linf":  # Uniform in [-eps, eps]^d.
        assert float(jnp.max(jnp.abs(delta))) <= eps + TOL
        assert abs(float(delta.mean())) < 0.01 and abs(float(delta.std()) - eps / 3**0.5) < 0.01
    else:  # Uniform in the ball: radius eps * U^(1/64), mostly near eps; isotropic.
        radius = jnp.linalg.norm(delta, axis=1)
        assert float(radius.max()) <= eps + TOL
        assert abs(float(jnp.median(radius)) - eps * 0.5 ** (1 / 64)) < 0.02 * eps
        assert abs(float(delta.mean())) < 0.01
    assert not np.allclose(x_other, x_rand)


def test_jit_no_recompilation(setup):
    attack = attacks.pgd(epsilon=0.1, num_steps=3)  # Default threefry keys, both kinds.
    jitted = _jit(attack, static_argnums=0)
    apply_fn, params = setup.apply_fn, setup.params
    a = jitted(apply_fn, params, setup.x, setup.y, key=jax.random.PRNGKey(0))
    b = jitted(apply_fn, params, 1.0 - setup.x, _targets(setup.y), key=jax.random.PRNGKey(1))
    assert jitted._cache_size() == 1
    assert not np.allclose(a, b)

    closed = _jit(lambda p, x, y, key: attack(apply_fn, p, x, y, key=key))
    closed(params, setup.x, setup.y, jax.random.key(0))
    closed(params, 1.0 - setup.x, _targets(setup.y), jax.random.key(1))
    assert closed._cache_size() == 1


def test_no_gradient_flows_through_attack(setup):
    attack = attacks.pgd(epsilon=0.1, num_steps=3, norm="l2", random_start=False)
    apply_fn, x, y = setup.apply_fn, setup.x, setup.y

    @_jit
    def adversarial_grads(params, x):
        return jax.grad(lambda p, x: _mean_ce(apply_fn, p, attack(apply_fn, p, x, y), y), (0, 1))(
            params, x
        )

    g_params, g_x = adversarial_grads(setup.params, x)
    x_adv = attack(apply_fn, setup.params, x, y)
    g_fixed = _jit(jax.grad(lambda p: _mean_ce(apply_fn, p, x_adv, y)))(setup.params)
    for got, want in zip(jax.tree.leaves(g_params), jax.tree.leaves(g_fixed), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(g_x, jnp.zeros_like(x))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": 0.0}, "epsilon must be a finite number > 0"),
        ({"epsilon": -0.1}, "epsilon must be a finite number > 0"),
        ({"epsilon": math.nan}, "epsilon must be a finite number > 0"),
        ({"epsilon": math.inf}, "epsilon must be a finite number > 0"),
        ({"epsilon": "0.1"}, "epsilon must be a finite number > 0"),
        ({"num_steps": 0}, "num_steps must be an integer >= 1"),
        ({"num_steps": 2.5}, "num_steps must be an integer >= 1"),
        ({"num_steps": True}, "num_steps must be an integer >= 1"),
        ({"step_size": 0.0}, "step_size must be a finite number > 0"),
        ({"step_size": math.inf}, "step_size must be a finite number > 0"),
        ({"norm": "l1"}, "norm must be one of 'linf', 'l2'; got 'l1'"),
        ({"loss": "hinge"}, "loss must be one of 'ce', 'margin'; got 'hinge'"),
        ({"bounds": (1.0, 0.0)}, "bounds must be finite with lo < hi"),
        ({"bounds": (0.0, 0.0)}, "bounds must be finite with lo < hi"),
        ({"bounds": (0.0,)}, "bounds must be None or a pair"),
        ({"epsilon": 8.0}, "epsilon=8.0 is outside the input range"),
        ({"epsilon": 1.5, "bounds": (-1.0, 0.0)}, "outside the input range"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attacks.pgd(**{"epsilon": 0.1, "num_steps": 5, **kwargs})
    fgsm_kwargs = {k: v for k, v in kwargs.items() if k not in ("num_steps", "step_size")}
    if fgsm_kwargs:
        with pytest.raises(ValueError, match=match):
            attacks.fgsm(**{"epsilon": 0.1, **fgsm_kwargs})


def test_good_edge_hyperparameters():
    attacks.pgd(epsilon=1.0, num_steps=np.int64(3))  # epsilon == hi - lo is allowed.
    attacks.pgd(epsilon=8.0, num_steps=1, bounds=None)
    attacks.pgd(epsilon=2.0, num_steps=1, norm="l2")  # Checked against the L2 box diameter.


def _linear(params, x):
    return x.reshape(x.shape[0], -1) @ params


@pytest.mark.parametrize(
    ("attack", "x", "y", "key", "match"),
    [
        ("pgd", (4, 2, 2, 1), jnp.zeros(3, jnp.int32), 0, r"y must be \[B\] with the batch"),
        ("pgd", (4, 2, 2, 1), jnp.zeros(4), 0, "y must hold integer labels"),
        ("pgd", (4, 2, 2, 1), jnp.zeros(4, jnp.int32), None, "key is required"),
        ("pgd", (4, 4), jnp.array([0, 1, 2, 3]), 0, r"y must lie in \[0, 3\)"),
        ("fgsm", (4, 4), jnp.array([0, 1, 2, -1]), None, r"y must lie in \[0, 3\)"),
        ("fgsm", (4,), jnp.zeros(4, jnp.int32), None, "x must be a float array"),
        ("l2", (4, 2, 2, 1), jnp.zeros(4, jnp.int32), None, "outside the input range"),
    ],
)
def test_bad_call_inputs(attack, x, y, key, match):
    fn = {
        "pgd": attacks.pgd(epsilon=0.1, num_steps=2),
        "fgsm": attacks.fgsm(epsilon=0.1),
        "l2": attacks.fgsm(epsilon=2.5, norm="l2"),  # > 1 * sqrt(4), the diameter of [0, 1]^4.
    }[attack]
    x = jnp.full(x, 0.5)
    params = jnp.ones((math.prod(x.shape[1:]), 3))
    with pytest.raises(ValueError, match=match):
        fn(_linear, params, x, y, key=None if key is None else _key(key))


def test_x_outside_bounds_raises_when_concrete():
    attack = attacks.fgsm(epsilon=0.1)
    params = jnp.ones((4, 3))
    x = jnp.full((2, 4), 1.5)
    with pytest.raises(ValueError, match=r"x lies outside bounds=\(0.0, 1.0\)"):
        attack(_linear, params, x, jnp.zeros(2, jnp.int32))
    attacks.fgsm(epsilon=0.1, bounds=None)(_linear, params, x, jnp.zeros(2, jnp.int32))


def test_fgsm_key_is_optional():
    attack = attacks.fgsm(epsilon=0.1, norm="l2")
    params = jnp.arange(12.0).reshape(4, 3) / 10
    x, y = jnp.full((2, 4), 0.5), jnp.array([0, 2])
    np.testing.assert_array_equal(
        attack(_linear, params, x, y), attack(_linear, params, x, y, key=_key(0))
    )


def test_losses():
    logits = jnp.array([[1.0, 3.0, 2.0], [5.0, 0.0, 1.0]])
    y = jnp.array([1, 0])
    np.testing.assert_allclose(attacks.margin_loss(logits, y), [-1.0, -4.0])
    np.testing.assert_allclose(attacks.margin_loss(logits, jnp.array([0, 2])), [2.0, 4.0])
    np.testing.assert_allclose(
        attacks.ce_loss(logits, y),
        optax.softmax_cross_entropy_with_integer_labels(logits, y),
        rtol=1e-6,
    )
    # The margin's gradient reaches only the label and the best other class.
    g = jax.grad(lambda f: attacks.margin_loss(f, y).sum())(logits)
    np.testing.assert_array_equal(g, [[0.0, -1.0, 1.0], [-1.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="integer dtype"):
        attacks.ce_loss(logits, y.astype(jnp.float32))
    with pytest.raises(ValueError, match="K >= 2"):
        attacks.margin_loss(logits[:, :1], y * 0)
    with pytest.raises(ValueError, match=r"labels must be \[B\]"):
        attacks.margin_loss(logits, y[:1])
