"""Tests for jaxinterp.models: shapes, smoothness, per-example independence and adapters."""

from __future__ import annotations

import functools

import flax.linen as nn
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
SHAPES = [(2, 8, 8, 1), (2, 32, 32, 3)]


def _small(name, **overrides):
    return get_model(name, num_classes=NUM_CLASSES, **{**SMALL_KWARGS[name], **overrides})


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, dtype=jnp.float32)


# --------------------------------------------------------------------------- activations


def test_activations_values_and_bounds():
    x = jnp.linspace(-5.0, 5.0, 101)
    np.testing.assert_array_equal(get_activation("relu")(x), jax.nn.relu(x))
    np.testing.assert_allclose(get_activation("softplus")(x), jnp.log1p(jnp.exp(x)), rtol=1e-6)
    for beta in (0.5, 3.0, 100.0):
        gap = get_activation("softplus", beta=beta)(x) - jax.nn.relu(x)
        assert float(gap.min()) >= 0.0
        assert float(gap.max()) <= np.log(2.0) / beta + 1e-6
    # Numerically stable for large |beta * x|.
    big = get_activation("softplus", beta=1e3)(jnp.array([-1e4, 1e4], jnp.float32))
    assert np.all(np.isfinite(big)) and float(big[1]) == pytest.approx(1e4)


# --------------------------------------------------------------------------- shapes and features


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_full_size_shapes(name, shape):
    model = get_model(name, num_classes=10)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply_fn, params, x).shape == (shape[0], 10)
    feats = jax.eval_shape(model.features_fn, params, x)
    assert set(feats) == EXPECTED_FEATURES[name]
    if name == "resnet18":
        n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
        assert 11.1e6 < n_params < 11.2e6  # standard CIFAR ResNet-18 size
        assert feats["layer1"].shape[-1] == 64 and feats["layer4"].shape[-1] == 512


@functools.cache
def _setup(name: str, shape: tuple[int, ...] = (3, 8, 8, 1)):
    """Small model, params from a jitted init, input, and a jitted (logits, features) function.

    Cached: compiling inits and forward passes dominates the run time on CPU.
    """
    model = _small(name)
    x = _normal(1, shape)
    params = jax.jit(model.init)(jax.random.key(0), x)
    both = jax.jit(lambda p, x: (model.apply_fn(p, x), model.features_fn(p, x)))
    return model, params, x, both


# ResNet-18 is only run numerically on 8x8x1 (its init alone takes seconds to compile on CPU);
# its 32x32x3 shapes are covered by test_full_size_shapes and test_small_shapes.
NUMERIC_CASES = [
    ("mlp", (3, 8, 8, 1)),
    ("mlp", (2, 32, 32, 3)),
    ("cnn", (3, 8, 8, 1)),
    ("cnn", (2, 32, 32, 3)),
    ("resnet18", (3, 8, 8, 1)),
]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_small_shapes(name, shape):
    model = _small(name)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    params = jax.eval_shape(jax.jit(model.init), jax.random.key(0), x)
    assert jax.eval_shape(model.apply_fn, params, x).shape == (shape[0], NUM_CLASSES)
    feats = jax.eval_shape(model.features_fn, params, x)
    assert set(feats) == EXPECTED_FEATURES[name]
    assert all(f.shape[0] == shape[0] for f in feats.values())
    if name == "cnn":
        assert feats["conv1"].shape == (*shape[:3], 4)
        assert feats["conv3"].shape == (shape[0], shape[1] // 2, shape[2] // 2, 8)
    if name == "resnet18":  # 8x8 inputs go down to 1x1 in the last stage
        assert feats["layer4"].shape == (shape[0], shape[1] // 8, shape[2] // 8, 64)


@pytest.mark.parametrize(("name", "shape"), NUMERIC_CASES)
def test_logits_and_features_under_jit(name, shape):
    model, params, x, both = _setup(name, shape)
    logits, feats = both(params, x)
    assert logits.shape == (shape[0], NUM_CLASSES) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    assert set(feats) == EXPECTED_FEATURES[name]
    for feat in feats.values():
        assert isinstance(feat, jax.Array) and feat.shape[0] == shape[0]
    if name == "mlp":  # eager and jitted agree
        np.testing.assert_allclose(model.apply_fn(params, x), logits, rtol=1e-5, atol=1e-5)


def test_features_flattening_of_nested_and_repeated_sows():
    class Inner(nn.Module):
        @nn.compact
        def __call__(self, x):
            self.sow("intermediates", "h", x)
            return x

    class Outer(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = Inner(name="inner")(x.reshape(len(x), -1))
            self.sow("intermediates", "twice", x)
            self.sow("intermediates", "twice", 2 * x)
            return nn.Dense(2)(x)

    model = from_linen(Outer())
    assert model.name == "outer"
    x = _normal(0, (2, 4, 4, 1))
    feats = model.features_fn(model.init(jax.random.key(0), x), x)
    assert set(feats) == {"inner/h", "twice/0", "twice/1"}
    np.testing.assert_array_equal(feats["twice/1"], 2 * feats["twice/0"])


# --------------------------------------------------------------------------- smoothness


def _input_hvp(apply_fn, params, x, v):
    def f(x):
        return apply_fn(params, x)[:, 0].sum()

    return jax.jvp(jax.grad(f), (x,), (v,))[1]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_softplus_has_curvature_and_relu_has_none(name):
    x, v = _normal(1, (2, 8, 8, 1)), _normal(2, (2, 8, 8, 1))
    relu, soft = _small(name, activation="relu"), _small(name, activation="softplus")
    params = relu.init(jax.random.key(0), x)  # same param tree for both activations
    hvp_relu = _input_hvp(relu.apply_fn, params, x, v)
    hvp_soft = _input_hvp(soft.apply_fn, params, x, v)
    assert float(jnp.abs(hvp_relu).max()) == 0.0
    assert float(jnp.abs(hvp_soft).max()) > 1e-4


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_softplus_approaches_relu_as_beta_grows(name):
    x = _normal(1, (4, 8, 8, 1))
    relu = _small(name, activation="relu")
    params = relu.init(jax.random.key(0), x)
    ref = relu.apply_fn(params, x)
    errs = [
        float(jnp.abs(_small(name, beta=beta).apply_fn(params, x) - ref).max())
        for beta in (1.0, 10.0, 100.0, 1000.0)
    ]
    assert errs == sorted(errs, reverse=True), errs
    assert errs[-1] < 1e-2 * float(jnp.abs(ref).max() + 1.0), errs


# --------------------------------------------------------------------------- independence


def _assert_examples_independent(apply_fn, params, x):
    """Cross-example Jacobian blocks are exactly zero; perturbing x[1] leaves other rows."""
    f = jax.jit(apply_fn)
    base = np.asarray(f(params, x))
    moved = np.asarray(f(params, x.at[1].add(_normal(9, x.shape[1:]))))
    assert not np.array_equal(moved[1], base[1])
    np.testing.assert_array_equal(np.delete(moved, 1, axis=0), np.delete(base, 1, axis=0))
    jac = jax.jit(jax.jacrev(apply_fn, argnums=1))(params, x)  # [B, C, B, H, W, Cin]
    batch = x.shape[0]
    for i in range(batch):
        for j in range(batch):
            block = np.asarray(jac[i, :, j])
            if i == j:
                assert np.abs(block).max() > 0.0
            else:
                assert np.all(block == 0.0), (i, j)


@pytest.mark.parametrize("name", MODELS)
def test_examples_never_interact(name):
    model = _small(name)
    x = _normal(1, (3, 8, 8, 1))
    _assert_examples_independent(model.apply_fn, model.init(jax.random.key(0), x), x)


def test_independence_check_detects_batch_coupling():
    def coupled(params, x):  # BatchNorm-like: subtracts the batch mean
        h = x.reshape(len(x), -1)
        return (h - h.mean(axis=0)) @ params["w"]

    x = _normal(1, (3, 8, 8, 1))
    with pytest.raises(AssertionError):
        _assert_examples_independent(coupled, {"w": _normal(0, (64, NUM_CLASSES))}, x)


# --------------------------------------------------------------------------- adapters


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
    return x.reshape(len(x), -1) @ params["w"] + params["b"]


def _sgd_step_decreases_loss(apply_fn, params, x, y):
    """Generic trainer code: knows nothing about Linen, NNX or plain functions."""

    def loss_fn(p):
        logits = apply_fn(p, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    opt = optax.sgd(0.1)
    opt_state = opt.init(params)
    loss0, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    updates, _ = opt.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    assert float(loss_fn(new_params)) < float(loss0)


def _adapters():
    x = _normal(1, (8, 8, 8, 1))
    linen = _small("mlp")
    nnx_module = TinyNNX(NUM_CLASSES, rngs=nnx.Rngs(0))
    nnx_module.eval()
    nnx_apply, nnx_params = from_nnx(nnx_module)
    plain = {"w": 0.01 * _normal(0, (64, NUM_CLASSES)), "b": jnp.zeros(NUM_CLASSES)}
    return x, {
        "linen": (linen.apply_fn, linen.init(jax.random.key(0), x)),
        "cnn": (_small("cnn").apply_fn, _small("cnn").init(jax.random.key(0), x)),
        "nnx": (nnx_apply, nnx_params),
        "plain": (_plain_apply_fn, plain),
    }


@pytest.mark.parametrize("kind", ["linen", "cnn", "nnx", "plain"])
def test_same_training_code_for_all_adapters(kind):
    x, adapters = _adapters()
    apply_fn, params = adapters[kind]
    y = jnp.arange(x.shape[0]) % NUM_CLASSES
    assert apply_fn(params, x).shape == (x.shape[0], NUM_CLASSES)
    _sgd_step_decreases_loss(apply_fn, params, x, y)
    _assert_examples_independent(apply_fn, params, x[:3])


def test_from_nnx_matches_module():
    module = TinyNNX(NUM_CLASSES, rngs=nnx.Rngs(0))
    module.eval()
    apply_fn, params = from_nnx(module)
    x = _normal(1, (2, 8, 8, 1))
    np.testing.assert_allclose(apply_fn(params, x), module(x), rtol=1e-6)
    assert all(jnp.issubdtype(p.dtype, jnp.floating) for p in jax.tree.leaves(params))


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"Unknown model 'vgg'.*mlp, cnn, resnet18"):
        get_model("vgg", num_classes=10)
    with pytest.raises(ValueError, match=r"Unknown activation 'gelu'.*relu, softplus"):
        get_model("mlp", num_classes=10, activation="gelu")
    with pytest.raises(ValueError, match="Unknown activation"):
        get_activation("tanh")
    for beta in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="beta must be a finite number > 0"):
            get_model("cnn", num_classes=10, beta=beta)
    with pytest.raises(ValueError, match="beta must be"):
        get_activation("softplus", beta=0)
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


def test_lenet_alias():
    model = get_model("LeNet", num_classes=10)
    assert model.name == "cnn"
