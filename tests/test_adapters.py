"""Tests for jaxinterp.models.adapters: NNX, Equinox and Haiku models as one Model.

Every adapter wraps a small MLP and a small conv net given the weights of a hand-written jnp
twin (:func:`_reference`), which is the independent computation each check compares with:
logits, parameter and input gradients, recorded layers and offset layers.
"""

from __future__ import annotations

import functools
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxinterp import attribution
from jaxinterp.core.checks import ArgumentTypeError
from jaxinterp.models import Model, from_equinox, from_haiku, from_nnx

X_SHAPE = (3, 8, 8, 1)  # [B, H, W, C]
HIDDEN, CHANNELS, NUM_CLASSES = 5, 2, 3
RTOL, ATOL = 1e-5, 1e-5


def _normal(seed, shape, scale=0.3):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _x():
    return _normal(100, X_SHAPE, scale=1.0)


def _weights(arch):
    """The reference weights: dense layers [in, out], the kernel HWIO."""
    if arch == "mlp":
        return {
            "w1": _normal(1, (64, HIDDEN)),
            "b1": _normal(2, (HIDDEN,)),
            "w2": _normal(3, (HIDDEN, NUM_CLASSES)),
            "b2": _normal(4, (NUM_CLASSES,)),
        }
    return {
        "k": _normal(5, (3, 3, 1, CHANNELS)),
        "kb": _normal(6, (CHANNELS,)),
        "w": _normal(7, (8 * 8 * CHANNELS, NUM_CLASSES)),
        "b": _normal(8, (NUM_CLASSES,)),
    }


def _reference(arch, w, x, pre=0.0, post=0.0):
    """The twin in plain jnp; ``pre``/``post``: offsets before/after the hidden softplus."""
    if arch == "mlp":
        h = x.reshape(len(x), -1) @ w["w1"] + w["b1"][None]
        h = jax.nn.softplus(h + pre) + post
        return h @ w["w2"] + w["b2"][None]
    h = jax.lax.conv_general_dilated(
        x, w["k"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    h = jax.nn.softplus(h + w["kb"][None, None, None] + pre) + post
    return h.reshape(len(h), -1) @ w["w"] + w["b"][None]


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


def _trees_close(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        _close(u, v)


# ------------------------------------------------------------------------------- the twins
# The frameworks' own initialisers are not used: the twins' weights are set (or, in Equinox,
# the module is built abstractly), which also keeps random-number compilations out of the tests.
ZEROS = nnx.initializers.zeros_init()


class NNXMLP(nnx.Module):
    def __init__(self, *, rngs):
        self.l1 = nnx.Linear(64, HIDDEN, kernel_init=ZEROS, rngs=rngs)
        self.l2 = nnx.Linear(HIDDEN, NUM_CLASSES, kernel_init=ZEROS, rngs=rngs)

    def __call__(self, x):
        h = self.l1(x.reshape(len(x), -1))
        self.sow(nnx.Intermediate, "pre", h)  # recorded only
        h = self.perturb("hidden", nnx.softplus(h))  # recorded and open to an offset
        self.sow(nnx.Intermediate, "hidden", h)
        return self.l2(h)


class NNXConvBlock(nnx.Module):
    def __init__(self, *, rngs):
        self.conv = nnx.Conv(
            1, CHANNELS, kernel_size=(3, 3), padding="SAME", kernel_init=ZEROS, rngs=rngs
        )

    def __call__(self, x):
        h = self.perturb("act", nnx.softplus(self.conv(x)))
        self.sow(nnx.Intermediate, "act", h)
        return h


class NNXCNN(nnx.Module):
    def __init__(self, *, rngs):
        self.block = NNXConvBlock(rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)  # non-Param (RNG) state, off in eval
        self.linear = nnx.Linear(8 * 8 * CHANNELS, NUM_CLASSES, kernel_init=ZEROS, rngs=rngs)

    def __call__(self, x):
        h = self.dropout(self.block(x))
        return self.linear(h.reshape(len(h), -1))


def _nnx(arch):
    w = _weights(arch)
    if arch == "mlp":
        module = NNXMLP(rngs=nnx.Rngs(0))
        module.l1.kernel[...], module.l1.bias[...] = w["w1"], w["b1"]
        module.l2.kernel[...], module.l2.bias[...] = w["w2"], w["b2"]

        def to_ref(p):
            p = nnx.to_pure_dict(p)
            return {
                "w1": p["l1"]["kernel"],
                "b1": p["l1"]["bias"],
                "w2": p["l2"]["kernel"],
                "b2": p["l2"]["bias"],
            }

    else:
        module = NNXCNN(rngs=nnx.Rngs(0))
        module.eval()
        module.block.conv.kernel[...], module.block.conv.bias[...] = w["k"], w["kb"]
        module.linear.kernel[...], module.linear.bias[...] = w["w"], w["b"]

        def to_ref(p):
            p = nnx.to_pure_dict(p)
            conv, linear = p["block"]["conv"], p["linear"]
            return {
                "k": conv["kernel"],
                "kb": conv["bias"],
                "w": linear["kernel"],
                "b": linear["bias"],
            }

    @nnx.jit
    def call(module, x):  # as flax 0.12 calls a module that sows (sow needs capture)
        return nnx.capture(module, nnx.Intermediate)(x)[0]

    return from_nnx(module), to_ref, functools.partial(call, module)


def _equinox(arch, batched=False):
    eqx = pytest.importorskip("equinox")
    w = _weights(arch)

    if arch == "mlp":

        class MLP(eqx.Module):
            l1: eqx.nn.Linear
            l2: eqx.nn.Linear

            def __init__(self, key):
                k1, k2 = jax.random.split(key)
                self.l1 = eqx.nn.Linear(64, HIDDEN, key=k1)
                self.l2 = eqx.nn.Linear(HIDDEN, NUM_CLASSES, key=k2)

            def hidden(self, x):  # one example [8, 8, 1]
                return jax.nn.softplus(self.l1(x.reshape(-1)))

            def __call__(self, x):
                return self.l2(self.hidden(x))

        module = eqx.tree_at(
            lambda m: (m.l1.weight, m.l1.bias, m.l2.weight, m.l2.bias),
            eqx.filter_eval_shape(MLP, jax.random.key(0)),
            (w["w1"].T, w["b1"], w["w2"].T, w["b2"]),
        )
        model = from_equinox(module, features=lambda m, x: {"hidden": m.hidden(x)})

        def to_ref(p):
            return {"w1": p.l1.weight.T, "b1": p.l1.bias, "w2": p.l2.weight.T, "b2": p.l2.bias}

    else:

        class CNN(eqx.Module):  # channels first, like eqx.nn.Conv2d
            conv: eqx.nn.Conv2d
            linear: eqx.nn.Linear

            def __init__(self, key):
                k1, k2 = jax.random.split(key)
                self.conv = eqx.nn.Conv2d(1, CHANNELS, 3, padding=1, key=k1)
                self.linear = eqx.nn.Linear(CHANNELS * 8 * 8, NUM_CLASSES, key=k2)

            def example(self, x):  # [C, H, W]
                return self.linear(jax.nn.softplus(self.conv(x)).reshape(-1))

            def __call__(self, x):
                return jax.vmap(self.example)(x) if batched else self.example(x)

        # CHW flattening: the dense rows reordered from (h, w, c) to (c, h, w).
        chw = w["w"].reshape(8, 8, CHANNELS, NUM_CLASSES).transpose(2, 0, 1, 3)
        module = eqx.tree_at(
            lambda m: (m.conv.weight, m.conv.bias, m.linear.weight, m.linear.bias),
            eqx.filter_eval_shape(CNN, jax.random.key(0)),
            (
                w["k"].transpose(3, 2, 0, 1),
                w["kb"].reshape(CHANNELS, 1, 1),
                chw.reshape(-1, NUM_CLASSES).T,
                w["b"],
            ),
        )
        model = from_equinox(module, channels_first=True, batched=batched)

        def to_ref(p):
            hwc = p.linear.weight.T.reshape(CHANNELS, 8, 8, NUM_CLASSES).transpose(1, 2, 0, 3)
            return {
                "k": p.conv.weight.transpose(2, 3, 1, 0),
                "kb": p.conv.bias.reshape(CHANNELS),
                "w": hwc.reshape(-1, NUM_CLASSES),
                "b": p.linear.bias,
            }

    def direct(x):
        z = jnp.moveaxis(x, -1, 1) if arch == "cnn" else x
        return module(z) if batched else jax.vmap(module)(z)

    return model, to_ref, jax.jit(direct)


def _haiku_fn(arch):
    hk = pytest.importorskip("haiku")

    def f(x):
        if arch == "mlp":
            h = jax.nn.softplus(hk.Linear(HIDDEN)(hk.Flatten()(x)))
        else:
            h = jax.nn.softplus(hk.Conv2D(CHANNELS, kernel_shape=3, padding="SAME")(x))
            h = hk.Flatten()(h)
        return hk.Linear(NUM_CLASSES)(h)

    return hk.transform(f)


def _haiku_params(arch, w):
    if arch == "mlp":
        return {"linear": {"w": w["w1"], "b": w["b1"]}, "linear_1": {"w": w["w2"], "b": w["b2"]}}
    return {"conv2_d": {"w": w["k"], "b": w["kb"]}, "linear": {"w": w["w"], "b": w["b"]}}


def _haiku(arch, rng=False):
    hk = pytest.importorskip("haiku")
    transformed = _haiku_fn(arch)
    params = _haiku_params(arch, _weights(arch))
    if not rng:
        transformed = hk.without_apply_rng(transformed)
    model = from_haiku(transformed, params)

    def to_ref(p):
        if arch == "mlp":
            return {
                "w1": p["linear"]["w"],
                "b1": p["linear"]["b"],
                "w2": p["linear_1"]["w"],
                "b2": p["linear_1"]["b"],
            }
        return {
            "k": p["conv2_d"]["w"],
            "kb": p["conv2_d"]["b"],
            "w": p["linear"]["w"],
            "b": p["linear"]["b"],
        }

    def direct(x):
        return transformed.apply(params, None, x) if rng else transformed.apply(params, x)

    return model, to_ref, jax.jit(direct)


CASES = {
    "nnx-mlp": lambda: _nnx("mlp"),
    "nnx-cnn": lambda: _nnx("cnn"),
    "equinox-mlp": lambda: _equinox("mlp"),
    "equinox-cnn": lambda: _equinox("cnn"),
    "equinox-cnn-batched": lambda: _equinox("cnn", batched=True),
    "haiku-mlp": lambda: _haiku("mlp"),
    "haiku-cnn": lambda: _haiku("cnn"),
    "haiku-rng-cnn": lambda: _haiku("cnn", rng=True),
}
# Per case: (layer the adapter opens to an offset, where the twin adds it), recorded layers.
LAYERS = {
    "nnx-mlp": (("hidden", "post"), {"pre", "hidden"}),
    "nnx-cnn": (("block/act", "post"), {"block/act"}),
    "haiku-mlp": (("linear", "pre"), {"flatten", "linear", "linear_1"}),
    "haiku-cnn": (("conv2_d", "pre"), {"conv2_d", "flatten", "linear"}),
    "haiku-rng-cnn": (("conv2_d", "pre"), {"conv2_d", "flatten", "linear"}),
}


@functools.cache
def _case(name):
    model, to_ref, direct = CASES[name]()
    params = model.init(jax.random.key(1), jnp.zeros(X_SHAPE))
    return model, params, to_ref, direct


def _arch(name):
    return "mlp" if name.endswith("mlp") else "cnn"


@pytest.mark.parametrize("name", CASES)
def test_apply_fn_is_the_module_and_the_twin(name):
    model, params, to_ref, direct = _case(name)
    x = _x()
    assert isinstance(model, Model)
    logits = model.apply_fn(params, x)
    assert logits.shape == (X_SHAPE[0], NUM_CLASSES)
    _close(logits, _reference(_arch(name), to_ref(params), x))
    _close(logits, direct(x))
    _close(jax.jit(model.apply_fn)(params, x), logits)
    assert all(jnp.issubdtype(p.dtype, jnp.floating) for p in jax.tree.leaves(params))


@pytest.mark.parametrize("name", CASES)
def test_parameter_gradient_is_the_twins(name):
    model, params, to_ref, _ = _case(name)
    x, c = _x(), _normal(9, (X_SHAPE[0], NUM_CLASSES), scale=1.0)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(c * model.apply_fn(p, x))))(params)
    expected = jax.jit(jax.grad(lambda p: jnp.sum(c * _reference(_arch(name), to_ref(p), x))))(
        params
    )
    _trees_close(grads, expected)


@pytest.mark.parametrize("name", CASES)
def test_input_gradient_attribution(name):
    model, params, to_ref, _ = _case(name)
    x, w = _x(), to_ref(params)
    score_fn = attribution.class_score(model.apply_fn, params, 1)
    saliency = jax.jit(lambda z: attribution.gradient(score_fn, z))(x)
    _close(saliency, jax.jit(jax.grad(lambda z: _reference(_arch(name), w, z)[:, 1].sum()))(x))


@pytest.mark.parametrize("name", LAYERS)
def test_features_are_the_recorded_layers(name):
    model, params, to_ref, _ = _case(name)
    (layer, where), recorded = LAYERS[name]
    x = _x()
    features = model.features_fn(params, x)
    assert set(features) == recorded
    assert all(v.shape[0] == X_SHAPE[0] for v in features.values())
    # The opened layer's activation, from the twin: the input of what follows it.
    w = to_ref(params)
    if _arch(name) == "mlp":
        pre = x.reshape(len(x), -1) @ w["w1"] + w["b1"][None]
    else:
        pre = (
            jax.lax.conv_general_dilated(
                x, w["k"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            + w["kb"][None, None, None]
        )
    _close(features[layer], pre if where == "pre" else jax.nn.softplus(pre))


@pytest.mark.parametrize("name", LAYERS)
def test_layer_fn_offsets_the_layer(name):
    model, params, to_ref, _ = _case(name)
    (layer, where), _ = LAYERS[name]
    x, w = _x(), to_ref(params)
    layer_fn = jax.jit(model.layer_fn)
    logits0, features0 = layer_fn(params, x, {})
    _close(logits0, jax.jit(model.apply_fn)(params, x))
    _trees_close(features0, jax.jit(model.features_fn)(params, x))
    shape = features0[layer].shape
    offset = _normal(10, shape, scale=1.0)
    logits, features = layer_fn(params, x, {layer: offset})
    reference = jax.jit(_reference, static_argnums=0)
    _close(logits, reference(_arch(name), w, x, **{where: offset}))
    _close(features[layer], features0[layer] + offset)
    _close(layer_fn(params, x, {layer: jnp.zeros(shape)})[0], logits0)
    # Its gradient in the offset at zero: the gradient of the logits in the activation.
    c = _normal(11, (X_SHAPE[0], NUM_CLASSES), scale=1.0)
    g = jax.jit(jax.grad(lambda o: jnp.sum(c * model.layer_fn(params, x, {layer: o})[0])))
    expected = jax.jit(jax.grad(lambda o: jnp.sum(c * _reference(_arch(name), w, x, **{where: o}))))
    _close(g(jnp.zeros(shape)), expected(jnp.zeros(shape)))
    with pytest.raises(ValueError, match=rf"no layer 'nope'.*{layer}"):
        model.layer_fn(params, x, {"nope": offset})


def test_nnx_offsetting_a_layer_only_sown_fails_and_init_is_the_module_state():
    model, params, _, _ = _case("nnx-mlp")
    with pytest.raises(ValueError, match=r"'pre'.*layers: hidden.*self.perturb"):
        model.layer_fn(params, _x(), {"pre": jnp.zeros((X_SHAPE[0], HIDDEN))})
    assert model.name == "nnxmlp" and from_nnx(NNXMLP(rngs=nnx.Rngs(0)), name="m").name == "m"
    module = NNXMLP(rngs=nnx.Rngs(3))
    _trees_close(from_nnx(module).init(jax.random.key(0), None), nnx.state(module, nnx.Param))


def test_equinox_features_and_no_layer_fn():
    model, params, to_ref, _ = _case("equinox-mlp")
    x, w = _x(), to_ref(params)
    features = model.features_fn(params, x)
    assert set(features) == {"hidden"}
    _close(features["hidden"], jax.nn.softplus(x.reshape(len(x), -1) @ w["w1"] + w["b1"][None]))
    cnn, cnn_params, _, _ = _case("equinox-cnn")
    assert cnn.features_fn(cnn_params, x) == {} and cnn.layer_fn is None and model.layer_fn is None
    assert cnn.name == "cnn"


def test_haiku_init_and_repeated_modules():
    hk = pytest.importorskip("haiku")
    x = _x()

    def linear(x):  # constant initialisers: init's values are known
        w_init, b_init = hk.initializers.Constant(0.1), hk.initializers.Constant(0.2)
        return hk.Linear(NUM_CLASSES, w_init=w_init, b_init=b_init)(x.reshape(len(x), -1))

    transformed = hk.transform(linear)
    model = from_haiku(transformed)  # params from init
    params = jax.jit(model.init)(jax.random.key(0), x)
    _trees_close(params, {"linear": {"w": jnp.full((64, NUM_CLASSES), 0.1), "b": jnp.full(3, 0.2)}})
    _close(model.apply_fn(params, x), x.reshape(len(x), -1) @ params["linear"]["w"] + 0.2)
    assert model.name == "haiku" and from_haiku(transformed, name="h").name == "h"
    assert from_haiku(transformed, params).init(jax.random.key(0), x) is params

    def twice(x):  # one module called twice: its calls are name/0 and name/1
        linear = hk.Linear(64)
        return linear(jax.nn.softplus(linear(x.reshape(len(x), -1))))[:, :NUM_CLASSES]

    w, b = _normal(13, (64, 64)), _normal(14, (64,))
    params = {"linear": {"w": w, "b": b}}
    model = from_haiku(hk.without_apply_rng(hk.transform(twice)), params)
    features = model.features_fn(params, x)
    assert set(features) == {"linear/0", "linear/1"}
    offset = _normal(12, features["linear/0"].shape)
    h = x.reshape(len(x), -1) @ w + b[None]
    first = jax.nn.softplus(h + offset) @ w + b[None]
    second = jax.nn.softplus(h) @ w + b[None] + offset
    _close(model.layer_fn(params, x, {"linear/0": offset})[0], first[:, :NUM_CLASSES])
    _close(model.layer_fn(params, x, {"linear/1": offset})[0], second[:, :NUM_CLASSES])
    with pytest.raises(ValueError, match="'linear'"):
        model.layer_fn(params, x, {"linear": offset})


def test_wrong_types():
    import flax.linen as nn

    with pytest.raises(ArgumentTypeError, match="flax.nnx Module.*from_linen"):
        from_nnx(nn.Dense(3))
    with pytest.raises(ArgumentTypeError, match="name"):
        from_nnx(NNXMLP(rngs=nnx.Rngs(0)), name=3)
    eqx = pytest.importorskip("equinox")
    linear = eqx.filter_eval_shape(eqx.nn.Linear, 2, 3, key=jax.random.key(0))
    with pytest.raises(ArgumentTypeError, match="equinox.Module, got NNXMLP"):
        from_equinox(NNXMLP(rngs=nnx.Rngs(0)))
    with pytest.raises(ArgumentTypeError, match="batched must be a bool"):
        from_equinox(linear, batched="yes")
    with pytest.raises(ArgumentTypeError, match="channels_first must be a bool"):
        from_equinox(linear, channels_first=1)
    with pytest.raises(ArgumentTypeError, match="features must be callable"):
        from_equinox(linear, features={})
    hk = pytest.importorskip("haiku")
    with pytest.raises(ArgumentTypeError, match="hk.transform"):
        from_haiku(lambda x: x)
    with pytest.raises(ArgumentTypeError, match="state is not supported"):
        from_haiku(hk.transform_with_state(lambda x: hk.Linear(3)(x)))


@pytest.mark.parametrize(
    ("adapter", "module", "pip"),
    [(from_equinox, "equinox", "jaxinterp[equinox]"), (from_haiku, "haiku", "jaxinterp[haiku]")],
)
def test_missing_optional_framework(adapter, module, pip, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    with pytest.raises(ImportError, match=re.escape(f"pip install '{pip}'")):
        adapter(object())


@pytest.mark.parametrize("name", ["nnx-cnn", "haiku-cnn"])
def test_grad_cam_runs_on_the_adapters_layer_fn(name):
    model, params, to_ref, _ = _case(name)
    (layer, where), _ = LAYERS[name]
    x, w, y = _x(), to_ref(params), jnp.arange(X_SHAPE[0]) % NUM_CLASSES
    explain = attribution.grad_cam(layer_fn=model.layer_fn, layer=layer)
    cam = jax.jit(lambda p, x: explain(model.apply_fn, p, x, y))(params, x)
    # By hand, from the twin: the layer's activation and the logit's gradient in it.
    a = model.features_fn(params, x)[layer]
    zero = jnp.zeros(a.shape)
    g = jax.grad(
        lambda o: jnp.take_along_axis(
            _reference(_arch(name), w, x, **{where: o}), y[:, None], axis=1
        ).sum()
    )(zero)
    want = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, g.mean(axis=(1, 2))))
    assert cam.shape == x.shape  # the layer is 8x8 like the input: no resize
    _close(cam[..., 0], want)
