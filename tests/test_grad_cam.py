"""Grad-CAM / Grad-CAM++: the hand-computed map of a linear conv layer, the layer taps they
run on, batching, jit and the errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attribution, models

K, C, CLASSES = 3, 2, 4


class LinearConv(nn.Module):
    """conv (linear in x) -> tap -> global average pool -> dense: ``∂z_c/∂A_k = W_kc / hw``."""

    @nn.compact
    def __call__(self, x):
        a = nn.Conv(K, (3, 3), padding="SAME", name="conv")(x)
        a = models.tap(self, "a", a)
        return nn.Dense(CLASSES, name="head")(a.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def linear():
    model = models.from_linen(LinearConv())
    x = jax.random.uniform(jax.random.key(0), (3, 5, 6, C))
    params = jax.jit(model.init)(jax.random.key(1), x)
    return model, params, x, jnp.array([0, 3, 1])


def _by_hand(params, x, y, plus):
    """The maps of the module docstring of ``_grad_cam``, from the weights."""
    p = params["conv"]
    a = jax.lax.conv_general_dilated(
        x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    a = a + p["bias"][None, None, None, :]
    hw = x.shape[1] * x.shape[2]
    g = params["head"]["kernel"][:, y].T / hw  # [B, K]: the same at every pixel
    if plus:
        total = a.sum(axis=(1, 2))  # [B, K]
        weight = g**2 / (2 * g**2 + total * g**3)
        alpha = hw * weight * jnp.maximum(g, 0)
    else:
        alpha = g
    cam = jnp.maximum(jnp.einsum("bhwk,bk->bhw", a, alpha), 0)
    return np.repeat(np.asarray(cam)[..., None], C, axis=-1)


@pytest.mark.parametrize("plus", [False, True])
def test_linear_conv_layer_gives_the_hand_computed_map(linear, plus):
    model, params, x, y = linear
    explain = attribution.grad_cam(layer_fn=model.layer_fn, plus=plus)
    got = jax.jit(lambda p, x, y: explain(model.apply_fn, p, x, y))(params, x, y)
    want = _by_hand(params, x, y, plus)
    assert want.max() > 0 and (want == 0).any()  # the ReLU both keeps and cuts
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_registry_names_build_grad_cam_and_grad_cam_pp(linear):
    model, params, x, y = linear
    context = {"layer_fn": model.layer_fn}
    for name, plus in (("grad_cam", False), ("grad_cam_pp", True)):
        got = attribution.EXPLAINERS.build(name, context=context)(model.apply_fn, params, x, y)
        np.testing.assert_allclose(got, _by_hand(params, x, y, plus), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def cnn():
    model = models.get_model("cnn", num_classes=5, channels=(4, 4, 6, 6), hidden=8)
    x = jax.random.uniform(jax.random.key(2), (4, 8, 8, 3))
    return model, jax.jit(model.init)(jax.random.key(3), x), x, jnp.array([0, 1, 4, 2])


def test_cnn_default_layer_is_the_last_conv_block_upsampled_to_the_input(cnn):
    model, params, x, y = cnn
    default = attribution.grad_cam(layer_fn=model.layer_fn)(model.apply_fn, params, x, y)
    conv4 = attribution.grad_cam(layer_fn=model.layer_fn, layer="conv4")
    np.testing.assert_array_equal(default, conv4(model.apply_fn, params, x, y))
    assert default.shape == x.shape and (default >= 0).all()
    np.testing.assert_array_equal(default[..., 0], default[..., 2])  # repeated over channels
    # conv4 is 4x4; the map on 8x8 is its bilinear resize.
    _, feats = model.layer_fn(params, x, {})
    assert feats["conv4"].shape[1:3] == (4, 4)
    conv1 = attribution.grad_cam(layer_fn=model.layer_fn, layer="conv1")
    assert not np.allclose(conv1(model.apply_fn, params, x, y), default)


def test_batched_equals_one_at_a_time_and_jit_equals_eager(cnn):
    model, params, x, y = cnn
    explain = attribution.grad_cam(layer_fn=model.layer_fn, plus=True)
    eager = explain(model.apply_fn, params, x, y)
    fn = jax.jit(lambda x, y: explain(model.apply_fn, params, x, y))
    jitted = fn(x, y)
    alone = np.concatenate([fn(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(alone, eager, rtol=1e-5, atol=1e-7)


def test_differentiable_in_the_input_and_the_params(cnn):
    model, params, x, y = cnn
    explain = attribution.grad_cam(layer_fn=model.layer_fn)

    def total(p, x):
        return explain(model.apply_fn, p, x, y).sum()

    gp, gx = jax.grad(total, argnums=(0, 1))(params, x)
    assert np.isfinite(gx).all() and np.abs(gx).max() > 0
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(gp))


def test_a_model_without_spatial_layers_or_layer_fn_is_refused(cnn):
    model, params, x, y = cnn
    with pytest.raises(ValueError, match="spatial layers .*: conv1, conv2, conv3, conv4"):
        attribution.grad_cam(layer_fn=model.layer_fn, layer="fc1")(model.apply_fn, params, x, y)
    with pytest.raises(ValueError, match="no tapped layer 'nope'"):
        model.layer_fn(params, x, {"nope": jnp.zeros(1)})
    mlp = models.get_model("mlp", num_classes=5, hidden=(4,))
    p = mlp.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="no spatial layer of the model; .*: none"):
        attribution.grad_cam(layer_fn=mlp.layer_fn)(mlp.apply_fn, p, x, y)
    with pytest.raises(ValueError, match="layer_fn=model.layer_fn"):
        attribution.grad_cam()
    with pytest.raises(ValueError, match="resize"):
        attribution.grad_cam(layer_fn=model.layer_fn, resize="area")
    with pytest.raises(ValueError, match=r"target must lie in \[0, 5\)"):
        attribution.grad_cam(layer_fn=model.layer_fn)(model.apply_fn, params, x, y + 1)


def test_a_zero_offset_leaves_the_model_unchanged_and_an_offset_moves_it(cnn):
    model, params, x, _ = cnn
    logits, feats = model.layer_fn(params, x, {})
    np.testing.assert_array_equal(logits, model.apply_fn(params, x))
    moved, moved_feats = model.layer_fn(params, x, {"fc1": jnp.ones_like(feats["fc1"])})
    np.testing.assert_allclose(moved_feats["fc1"], feats["fc1"] + 1.0, rtol=1e-6)
    head = params["Dense_1"]  # the output layer: logits = fc1 @ W + b
    np.testing.assert_allclose(moved - logits, jnp.ones((4, 8)) @ head["kernel"], rtol=1e-4)
