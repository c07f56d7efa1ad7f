"""loop_safe_conv: every derivative equals lax.conv_general_dilated's; loops compile canonical."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxinterp import attacks, attribution, models, regularizers, training

DN = ("NHWC", "HWIO", "NHWC")

# Strides, padding, dilations and feature groups (the bundled models use the first three).
CASES = {
    "same": dict(window_strides=(1, 1), padding="SAME"),
    "stride2": dict(window_strides=(2, 2), padding="SAME"),
    "1x1_stride2": dict(window_strides=(2, 2), padding="VALID", kernel=(1, 1)),
    "explicit_pad_rhs_dilation": dict(
        window_strides=(2, 1), padding=((1, 0), (2, 1)), rhs_dilation=(2, 1)
    ),
    "lhs_dilation": dict(window_strides=(1, 1), padding=((1, 1), (0, 2)), lhs_dilation=(2, 2)),
    "groups": dict(window_strides=(1, 1), padding="SAME", feature_group_count=2),
}


def _fns(case):
    kw = dict(case)
    kernel = kw.pop("kernel", (3, 3))
    groups = kw.get("feature_group_count", 1)
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(k[0], (2, 7, 6, 4), jnp.float64)
    w = jax.random.normal(k[1], (*kernel, 4 // groups, 6), jnp.float64)
    vx, vw = (
        jax.random.normal(kk, a.shape, jnp.float64) for kk, a in zip(k[2:], (x, w), strict=True)
    )

    def make(conv):
        def f(x, w):
            return jnp.sum(jnp.tanh(conv(x, w, dimension_numbers=DN, **kw)) ** 2)

        return f

    return make(lax.conv_general_dilated), make(models.loop_safe_conv), (x, w, vx, vw)


DERIVATIVES = {
    "value": lambda f, x, w, vx, vw: f(x, w),
    "reverse": lambda f, x, w, vx, vw: jax.grad(f, (0, 1))(x, w),
    "forward": lambda f, x, w, vx, vw: jax.jvp(f, (x, w), (vx, vw)),
    "reverse_over_reverse": lambda f, x, w, vx, vw: jax.grad(
        lambda x, w: jnp.sum(jax.grad(f)(x, w) ** 2), (0, 1)
    )(x, w),
    "forward_over_reverse": lambda f, x, w, vx, vw: jax.jvp(jax.grad(f, (0, 1)), (x, w), (vx, vw)),
    "jvp_of_jvp": lambda f, x, w, vx, vw: jax.jvp(
        lambda x: jax.jvp(f, (x, w), (vx, vw))[1], (x,), (vx,)
    ),
    "params_grad_of_jvp": lambda f, x, w, vx, vw: jax.grad(
        lambda w: jax.jvp(lambda x: f(x, w), (x,), (vx,))[1]
    )(w),
    "vmap_grad": lambda f, x, w, vx, vw: jax.vmap(jax.grad(f), (0, None))(
        jnp.stack([x, x + vx]), w
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("order", list(DERIVATIVES))
def test_every_derivative_equals_plain_conv_float64(case, order):
    with jax.enable_x64(True):
        plain, safe, args = _fns(CASES[case])
        derivative = DERIVATIVES[order]
        want = jax.jit(lambda *a: derivative(plain, *a))(*args)
        got = jax.jit(lambda *a: derivative(safe, *a))(*args)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert g.dtype == jnp.float64
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_flax_module_opts_in_with_the_same_values():
    import flax.linen as nn

    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3))
    plain = nn.Conv(5, (3, 3), strides=2)
    safe = nn.Conv(5, (3, 3), strides=2, conv_general_dilated=models.loop_safe_conv)
    params = plain.init(jax.random.PRNGKey(1), x)
    np.testing.assert_array_equal(safe.apply(params, x), plain.apply(params, x))


# --- Structure: no slow (non-canonical) convolution inside a while body. ---------------------


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def cnn_setup():
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 16, 16, 3))
    y = jnp.arange(4) % 10
    build = {
        conv: models.get_model("cnn", num_classes=10, beta=3.0, conv=conv)
        for conv in (models.loop_safe_conv, lax.conv_general_dilated)
    }
    params = jax.jit(models.get_model("cnn", num_classes=10).init)(jax.random.PRNGKey(1), x[:1])
    return build, params, x, y


def _pgd_at_step(apply_fn, params, x, y, key):
    import optax

    tx = optax.sgd(0.1)
    penalty = regularizers.combine(at=(1.0, regularizers.adversarial_training(num_steps=2)))
    step = training.make_train_step(apply_fn, tx, penalty=penalty)
    return step(training.create_train_state(params, tx, key=key), {"image": x, "label": y})[0]


def _gradient_map(apply_fn, params, x, label):
    score = lambda z: jnp.sum(jnp.take_along_axis(apply_fn(params, z), label[:, None], 1))  # noqa: E731
    return jax.grad(score)(x)


LOOP_METHODS = {
    "pgd": lambda f, p, x, y, k: attacks.pgd(epsilon=0.1, num_steps=2)(f, p, x, y, key=k),
    "boundary_search": lambda f, p, x, y, k: attacks.boundary_search(
        epsilons=(0.5,), pgd_steps=2, cw_steps=2, cw_binary_search_steps=1, refine_steps=2
    )(f, p, x, y, key=k),
    "relex": lambda f, p, x, y, k: attribution.relex(num_iterations=2, num_samples=2)(
        f, p, x, y, key=k
    ),
    "pgd_at_train_step": _pgd_at_step,
    # Reverse-over-reverse inside the loop: the attack differentiates a gradient map.
    "topk_attack": lambda f, p, x, y, k: (
        attacks.topk_attack(_gradient_map, epsilon=0.1, num_steps=2, k=8)(f, p, x, y).x_adv
    ),
}


@pytest.mark.parametrize("method", list(LOOP_METHODS))
def test_loop_bodies_have_only_canonical_convolutions(cnn_setup, method):
    build, params, x, y = cnn_setup
    key = jax.random.PRNGKey(2)

    def slow(conv):
        fn = LOOP_METHODS[method]
        apply_fn = build[conv].apply_fn
        text = jax.jit(lambda p, x, y, k: fn(apply_fn, p, x, y, k)).lower(params, x, y, key)
        text = text.compile().as_text()
        assert " while(" in text
        return models.loop_convolutions(text)

    assert slow(models.loop_safe_conv) == []
    # The check can fail: the plain convolution's input gradient is 01oi inside the loop.
    assert any("01oi" in labels for labels in slow(lax.conv_general_dilated))


def test_loop_convolutions_ignores_entry_computation():
    def grad_once(w, x):
        return jax.grad(
            lambda z: jnp.sum(lax.conv_general_dilated(z, w, (1, 1), "SAME", dimension_numbers=DN))
        )(x)

    w, x = jnp.ones((3, 3, 2, 4)), jnp.ones((1, 5, 5, 2))
    assert models.loop_convolutions(jax.jit(grad_once).lower(w, x).compile().as_text()) == []


# --- Structure: kernel gradients transpose stored arrays, not fused producers. --------------


def test_kernel_gradients_transpose_stored_arrays(cnn_setup):
    build, params, x, y = cnn_setup

    def fused(conv):
        apply_fn = build[conv].apply_fn
        loss = lambda p: jnp.mean(training.cross_entropy(apply_fn(p, x), y))  # noqa: E731
        return models.fused_conv_transposes(
            jax.jit(jax.grad(loss)).lower(params).compile().as_text()
        )

    assert fused(models.loop_safe_conv) == []
    # The check can fail: XLA fuses the softplus tail into the plain convolution's transposes.
    assert fused(lax.conv_general_dilated)


@pytest.mark.parametrize(
    "dn",
    [
        ("NCHW", "OIHW", "NCHW"),
        ("NHWC", "OIHW", "NCHW"),
        ("NCW", "WIO", "NWC"),
        ("NDHWC", "DHWIO", "NDHWC"),
    ],
)
def test_any_layout_equals_plain_conv_float64(dn, x64):
    spatial = len(dn[0]) - 2
    k = jax.random.split(jax.random.PRNGKey(3), 2)
    shape = {"N": 2, "C": 3, "H": 5, "W": 6, "D": 4}
    x = jax.random.normal(k[0], tuple(shape[c] for c in dn[0]), jnp.float64)
    w = jax.random.normal(k[1], tuple({"O": 4, "I": 3}.get(c, 3) for c in dn[1]), jnp.float64)

    def f(conv):
        def loss(x, w):
            out = conv(x, w, (1,) * spatial, "SAME", dimension_numbers=dn)
            return jnp.sum(jnp.tanh(out) ** 2)

        return jax.jit(lambda x, w: (loss(x, w), jax.grad(loss, (0, 1))(x, w)))

    want, got = f(lax.conv_general_dilated)(x, w), f(models.loop_safe_conv)(x, w)
    assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(got))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), want, got)


# Stride-1 paddings and dilations of the lowerings that replace XLA's convolution.
LOWERED = [
    dict(padding="SAME"),
    dict(padding="VALID"),
    dict(padding=((2, 0), (1, 3)), rhs_dilation=(2, 1)),
    dict(padding=((-1, 1), (1, 1))),
]


def _assert_lowered_equals_plain_conv(kw, x_shape, w_shape, seed):
    """Value, gradient and jvp equal the plain convolution's in float64, and the compiled
    forward pass has no convolution left (the lowering was taken)."""
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = jax.random.normal(k[0], x_shape, jnp.float64)
    w = jax.random.normal(k[1], w_shape, jnp.float64)
    vx = jax.random.normal(k[2], x.shape, jnp.float64)
    vw = jax.random.normal(k[3], w.shape, jnp.float64)

    def fns(conv):
        def f(x, w):
            return jnp.sum(jnp.tanh(conv(x, w, (1, 1), dimension_numbers=DN, **kw)) ** 2)

        return jax.jit(
            lambda x, w: (f(x, w), jax.grad(f, (0, 1))(x, w), jax.jvp(f, (x, w), (vx, vw)))
        )

    want, got = fns(lax.conv_general_dilated)(x, w), fns(models.loop_safe_conv)(x, w)
    assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(got))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11), want, got)
    text = jax.jit(lambda x, w: models.loop_safe_conv(x, w, (1, 1), dimension_numbers=DN, **kw))
    assert "convolution(" not in text.lower(x, w).compile().as_text()


@pytest.mark.parametrize("kw", LOWERED)
def test_few_output_convolution_equals_plain_conv_float64(kw, x64):
    # 2 outputs x 9 taps <= 20 inputs: lowered as one matrix product and a shifted sum.
    _assert_lowered_equals_plain_conv(kw, (2, 7, 6, 20), (3, 3, 20, 2), seed=4)


@pytest.mark.parametrize("kw", LOWERED)
@pytest.mark.parametrize("channels", [1, 3])
def test_few_input_convolution_equals_plain_conv_float64(kw, channels, x64):
    # 1 or 3 input features, 9 taps, 8 outputs: lowered as a sum of scaled shifted copies.
    _assert_lowered_equals_plain_conv(kw, (2, 7, 6, channels), (3, 3, channels, 8), seed=5)


def test_few_input_rule_leaves_wider_convolutions_to_xla():
    x, w = jnp.zeros((2, 8, 8, 4)), jnp.zeros((3, 3, 4, 8))  # 4 input features: XLA's own
    fn = jax.jit(lambda x, w: models.loop_safe_conv(x, w, (1, 1), "SAME", dimension_numbers=DN))
    assert "convolution(" in fn.lower(x, w).compile().as_text()
