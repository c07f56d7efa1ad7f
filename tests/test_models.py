"""Tests for jaxinterp.models: shapes, smoothness, per-example independence and adapters."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxinterp.models import (
    MLP,
    MODELS,
    LeNet,
    ResNet18,
    from_linen,
    from_nnx,
    get_activation,
    get_model,
)
from jaxinterp.models.cnn import _max_pool
from jaxinterp.models.model import _flatten_intermediates

NUM_CLASSES = 3
# Small widths keep every numeric test fast on CPU; full-size models are checked with eval_shape.
SMALL_KWARGS = {
    "mlp": {"hidden": (16, 16)},
    "cnn": {"channels": (4, 4, 8, 8), "hidden": 16},
    "resnet18": {"width": 8, "num_groups": 4},
}
EXPECTED_FEATURES = {
    "mlp": {"dense1", "dense2"},
    "cnn": {"conv1", "conv2", "conv3", "conv4", "fc1"},
    "resnet18": {"stem", "layer1", "layer2", "layer3", "layer4"},
}
DIGITS, CIFAR = (3, 8, 8, 1), (2, 32, 32, 3)  # [B, H, W, C]


def _small(name, **overrides):
    return get_model(name, num_classes=NUM_CLASSES, **{**SMALL_KWARGS[name], **overrides})


def _key(seed: int = 0) -> jax.Array:
    # XLA:CPU compiles threefry slowly (~2 s per random op on a 2-core box); "rbg" keys make
    # every init in this file cheap to compile. Production code keeps the default PRNG.
    return jax.random.key(seed, impl="rbg")


def _jit(fun):
    # Tests are compile-bound on CPU; XLA's backend optimisations are not worth it here.
    return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0})


def _probe(apply_fn, features_fn=None):
    """Jitted ``(params, x) -> (jacobian [B, C, B, H, W, Cin], (logits, features))``."""

    def fwd(params, x):
        logits = apply_fn(params, x)
        return logits, (logits, features_fn(params, x) if features_fn else {})

    return _jit(jax.jacrev(fwd, argnums=1, has_aux=True))


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def test_activations_values_and_bounds():
    x = jnp.linspace(-5.0, 5.0, 101)
    np.testing.assert_array_equal(get_activation("relu")(x), jax.nn.relu(x))
    np.testing.assert_allclose(get_activation("softplus")(x), jnp.log1p(jnp.exp(x)), rtol=1e-6)
    for beta in (0.5, 3.0, 100.0):
        gap = get_activation("softplus", beta=beta)(x) - jax.nn.relu(x)
        assert float(gap.min()) >= -1e-6  # float32 rounding for large x
        assert float(gap.max()) <= np.log(2.0) / beta + 1e-6
    # Numerically stable for large |beta * x|.
    big = get_activation("softplus", beta=1e3)(jnp.array([-1e4, 1e4], jnp.float32))
    assert np.all(np.isfinite(big)) and float(big[1]) == pytest.approx(1e4)


@pytest.mark.parametrize("small", [False, True], ids=["full", "small"])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [DIGITS, CIFAR])
def test_shapes(name, shape, small):
    kwargs = SMALL_KWARGS[name] if small else {}
    model = get_model(name, num_classes=NUM_CLASSES, **kwargs)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    params = jax.eval_shape(jax.jit(model.init), _key(), x)  # shapes only: no compile
    assert jax.eval_shape(model.apply_fn, params, x).shape == (shape[0], NUM_CLASSES)
    feats = jax.eval_shape(model.features_fn, params, x)
    assert set(feats) == EXPECTED_FEATURES[name]
    assert all(f.shape[0] == shape[0] for f in feats.values())
    b, h, w, _ = shape
    if name == "cnn":
        c1, _, c3, _ = kwargs.get("channels", (32, 32, 64, 64))
        assert feats["conv1"].shape == (b, h, w, c1)
        assert feats["conv3"].shape == (b, h // 2, w // 2, c3)
        assert feats["fc1"].shape == (b, kwargs.get("hidden", 256))
    if name == "resnet18":  # 8x8 inputs go down to 1x1 in the last stage
        width = kwargs.get("width", 64)
        assert feats["layer1"].shape == (b, h, w, width)
        assert feats["layer4"].shape == (b, h // 8, w // 8, 8 * width)
        if not small:  # the standard CIFAR ResNet-18 size
            assert 11.1e6 < sum(leaf.size for leaf in jax.tree.leaves(params)) < 11.2e6


@functools.cache
def _setup(name: str, shape: tuple[int, ...]):
    """Small model, params from a jitted init, an input and its :func:`_probe` (cached)."""
    model = _small(name)
    x = _normal(1, shape)
    params = _jit(model.init)(_key(), x)
    return model, params, x, _probe(model.apply_fn, model.features_fn)


# ResNet-18 is only run numerically on 8x8x1 (its init alone takes seconds to compile on CPU);
# its 32x32x3 shapes are covered by test_shapes.
NUMERIC_CASES = [*((n, s) for n in ("mlp", "cnn") for s in (DIGITS, CIFAR)), ("resnet18", DIGITS)]


@pytest.mark.parametrize(("name", "shape"), NUMERIC_CASES)
def test_logits_and_features_under_jit(name, shape):
    model, params, x, probe = _setup(name, shape)
    _, (logits, feats) = probe(params, x)
    assert logits.shape == (shape[0], NUM_CLASSES) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    assert set(feats) == EXPECTED_FEATURES[name]
    for feat in feats.values():
        assert isinstance(feat, jax.Array) and feat.shape[0] == shape[0]
    if name == "mlp":  # eager and jitted agree
        np.testing.assert_allclose(model.apply_fn(params, x), logits, rtol=1e-5, atol=1e-5)


def test_features_flattening_of_nested_and_repeated_sows():
    h = jnp.ones((2, 3))
    tree = {"fc": (h,), "twice": (h, 2 * h), "block": {"conv": (3 * h,)}}  # sow's layout
    feats = _flatten_intermediates(tree)
    assert set(feats) == {"fc", "twice/0", "twice/1", "block/conv"}
    assert all(isinstance(f, jax.Array) and f.shape == (2, 3) for f in feats.values())
    assert from_linen(MLP(num_classes=2)).name == "mlp"


def _input_hvp(apply_fn):
    """Jitted ``(params, x, v) -> H v``, H the input Hessian of the summed class-0 logit."""

    def hvp(params, x, v):
        grad_fn = jax.grad(lambda x: apply_fn(params, x)[:, 0].sum())
        return jax.jvp(grad_fn, (x,), (v,))[1]

    return _jit(hvp)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_softplus_has_curvature_and_relu_has_none(name):
    _, params, x, _ = _setup(name, DIGITS)  # the param tree does not depend on the activation
    v = _normal(2, x.shape)
    hvp_relu = _input_hvp(_small(name, activation="relu").apply_fn)(params, x, v)
    hvp_soft = _input_hvp(_small(name, activation="softplus").apply_fn)(params, x, v)
    assert float(jnp.abs(hvp_relu).max()) == 0.0  # piecewise linear: exactly zero
    assert float(jnp.abs(hvp_soft).max()) > 1e-4


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_softplus_approaches_relu_as_beta_grows(name):
    _, params, x, _ = _setup(name, DIGITS)
    ref = _jit(_small(name, activation="relu").apply_fn)(params, x)
    errs = [
        float(jnp.abs(_jit(_small(name, beta=beta).apply_fn)(params, x) - ref).max())
        for beta in (1.0, 10.0, 100.0, 1000.0)
    ]
    assert errs == sorted(errs, reverse=True), errs
    assert errs[-1] < 1e-2 * float(jnp.abs(ref).max() + 1.0), errs


def _assert_examples_independent(probe, params, x):
    """Cross-example Jacobian blocks are exactly zero; perturbing x[1] leaves other rows."""
    jac, (base, _) = jax.tree.map(np.asarray, probe(params, x))
    moved = np.asarray(probe(params, x.at[1].add(_normal(9, x.shape[1:])))[1][0])
    assert not np.array_equal(moved[1], base[1])
    np.testing.assert_array_equal(np.delete(moved, 1, axis=0), np.delete(base, 1, axis=0))
    for i in range(x.shape[0]):  # jac: [B, C, B, H, W, Cin]
        assert np.abs(jac[i, :, i]).max() > 0.0
        assert np.all(np.delete(jac[i], i, axis=1) == 0.0), i


@pytest.mark.parametrize("name", MODELS)
def test_examples_never_interact(name):
    _, params, x, probe = _setup(name, DIGITS)
    _assert_examples_independent(probe, params, x)


def test_independence_check_detects_batch_coupling():
    def coupled(params, x):  # BatchNorm-like: subtracts the batch mean
        h = x.reshape(len(x), -1)
        return (h - h.mean(axis=0, keepdims=True)) @ params["w"]

    x = _normal(1, DIGITS)
    with pytest.raises(AssertionError):
        _assert_examples_independent(_probe(coupled), {"w": _normal(0, (64, NUM_CLASSES))}, x)


class TinyNNX(nnx.Module):
    """Conv + dropout + linear, to check from_nnx on a module with non-Param (RNG) state."""

    def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.linear = nnx.Linear(8 * 8 * 4, num_classes, rngs=rngs)

    def __call__(self, x):
        h = self.dropout(nnx.softplus(self.conv(x)))
        return self.linear(h.reshape(len(h), -1))


def _plain_apply_fn(params, x):
    # [None] because the test config sets jax_numpy_rank_promotion="raise".
    return x.reshape(len(x), -1) @ params["w"] + params["b"][None]


def _sgd_step_decreases_loss(apply_fn, params, x, y):
    """Generic trainer code: knows nothing about Linen, NNX or plain functions."""

    def loss_fn(p):
        logits = apply_fn(p, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    opt = optax.sgd(1e-2)

    @_jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    new_params, opt_state, loss0, grads = step(params, opt.init(params))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    _, _, loss1, _ = step(new_params, opt_state)
    assert float(loss1) < float(loss0)


@functools.cache
def _adapter(kind: str):
    """(apply_fn, params) for a Linen model, an NNX module or a plain function."""
    if kind in ("mlp", "cnn"):
        model, params, _, _ = _setup(kind, DIGITS)
        return model.apply_fn, params
    if kind == "nnx":
        module = TinyNNX(NUM_CLASSES, rngs=nnx.Rngs(_key()))
        module.eval()  # dropout off; its RNG state is split off from the params
        model = from_nnx(module)
        return model.apply_fn, model.init(_key(), jnp.zeros(DIGITS))
    return _plain_apply_fn, {"w": 0.01 * _normal(0, (64, NUM_CLASSES)), "b": jnp.zeros(NUM_CLASSES)}


@pytest.mark.parametrize("kind", ["mlp", "cnn", "nnx", "plain"])
def test_same_training_code_for_all_adapters(kind):
    apply_fn, params = _adapter(kind)
    x = _normal(1, (8, 8, 8, 1))
    y = jnp.arange(x.shape[0]) % NUM_CLASSES
    assert jax.eval_shape(apply_fn, params, x).shape == (x.shape[0], NUM_CLASSES)
    _sgd_step_decreases_loss(apply_fn, params, x, y)
    if kind in ("nnx", "plain"):  # the Linen models are checked in test_examples_never_interact
        _assert_examples_independent(_probe(apply_fn), params, x[:3])


def test_from_nnx_matches_module():
    module = TinyNNX(NUM_CLASSES, rngs=nnx.Rngs(_key()))
    module.eval()
    model = from_nnx(module)
    params = model.init(_key(), jnp.zeros(DIGITS))  # the module's own nnx.Param state
    x = _normal(1, (2, 8, 8, 1))
    np.testing.assert_allclose(model.apply_fn(params, x), module(x), rtol=1e-6)
    assert model.name == "tinynnx" and model.features_fn(params, x) == {}
    assert all(jnp.issubdtype(p.dtype, jnp.floating) for p in jax.tree.leaves(params))


def test_registry_and_bad_inputs():
    assert MODELS == ("mlp", "cnn", "resnet18")
    assert get_model("LeNet", num_classes=10).name == "cnn"  # alias, case-insensitive
    with pytest.raises(ValueError, match=r"Unknown model 'vgg'.*mlp, cnn, resnet18"):
        get_model("vgg", num_classes=10)
    with pytest.raises(ValueError, match=r"Unknown activation 'gelu'.*relu, softplus"):
        get_model("mlp", num_classes=10, activation="gelu")
    with pytest.raises(ValueError, match="Unknown activation"):
        get_activation("tanh")
    for beta in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="beta must be a finite number > 0"):
            get_model("cnn", num_classes=10, beta=beta)
    for n in (1, 0, 2.5):
        with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
            get_model("resnet18", num_classes=n)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) depth, foo"):
        get_model("mlp", num_classes=10, foo=1, depth=3)
    with pytest.raises(TypeError, match="accepted: width, num_groups"):
        get_model("resnet18", num_classes=10, hidden=(3,))
    # Direct module construction is validated too.
    for cls in (MLP, LeNet, ResNet18):
        with pytest.raises(ValueError, match="num_classes"):
            cls(num_classes=1)
        with pytest.raises(ValueError, match="beta"):
            cls(num_classes=2, beta=-0.5)


def test_max_pool_equals_reduce_window_and_picks_one_input_at_ties():
    x = _normal(11, (2, 5, 6, 3))  # odd height: 'SAME' pads the last row with -inf
    want = jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), ((0, 0), (0, 1), (0, 0), (0, 0))
    )
    np.testing.assert_array_equal(_max_pool(x), want)
    # A NaN input makes its window NaN, as max does.
    assert bool(jnp.isnan(_max_pool(x.at[0, 2, 3, 1].set(jnp.nan))[0, 1, 1, 1]))
    # At an exact tie the derivative goes to the window's first input, once (no 0 / 0).
    g = jax.grad(lambda v: _max_pool(v).sum())(jnp.zeros((1, 4, 4, 2)))
    np.testing.assert_array_equal(g[0, ::2, ::2], jnp.ones((2, 2, 2)))
    assert float(g.sum()) == 8.0
    t = jax.jvp(_max_pool, (jnp.zeros((1, 4, 4, 1)),), (jnp.arange(16.0).reshape(1, 4, 4, 1),))
    np.testing.assert_array_equal(t[1][0, :, :, 0], [[0.0, 2.0], [8.0, 10.0]])


@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_cnn_pools_before_its_activation_only_when_untapped(activation):
    """Untapped, LeNet's pooled layers compute act(maxpool(z)), the activation on a quarter of
    the values; with taps (layer_fn, features_fn) maxpool(act(z)), the order its docstring
    draws. For these non-decreasing activations the two are one function: logits, input
    gradients and Hessian-vector products agree in float64."""
    with jax.enable_x64(True):
        m = get_model(
            "cnn", num_classes=3, activation=activation, beta=3.0, channels=(4, 4, 6, 6), hidden=8
        )
        x = jnp.asarray(np.random.default_rng(5).uniform(size=(2, 8, 8, 1)))
        params = jax.tree.map(lambda p: p.astype(jnp.float64), m.init(jax.random.PRNGKey(0), x))
        v = jnp.asarray(np.random.default_rng(6).normal(size=x.shape))
        pooled_first = functools.partial(m.apply_fn, params)
        act_first = lambda z: m.layer_fn(params, z, {})[0]  # noqa: E731

        def derivatives(f):
            score = lambda z: jnp.sum(f(z)[:, 0] - 0.5 * f(z)[:, 2])  # noqa: E731
            return f(x), jax.grad(score)(x), jax.jvp(jax.grad(score), (x,), (v,))[1]

        for a, b in zip(derivatives(pooled_first), derivatives(act_first), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        if activation == "softplus":  # exp on a quarter of conv2's and conv4's values

            def exp_shapes(f):
                text = str(jax.make_jaxpr(f)(x))
                return sorted(re.findall(r"f64\[([\d,]+)\] = exp ", text))

            convs = ["2,8,8,4", "2,8,8,4", "2,4,4,6", "2,4,4,6"]  # conv1-conv4
            assert exp_shapes(act_first) == sorted([*convs, "2,8"])
            pooled = ["2,8,8,4", "2,4,4,4", "2,4,4,6", "2,2,2,6"]  # conv2, conv4 pooled first
            assert exp_shapes(pooled_first) == sorted([*pooled, "2,8"])
