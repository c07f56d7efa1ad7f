"""The penalties' shared logits: a penalty's own forward pass at ``x`` serves the step's
cross-entropy, with the same values and gradients as a step that recomputes it (kept apart
from ``test_training.py``: these cases are long, and a file runs on one test worker)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxinterp import models, regularizers, training


def _unshared(penalty):
    """``penalty`` without its shared logits: the step runs a forward pass of its own."""

    def wrapped(*args, **kwargs):
        total, terms = penalty(*args, **kwargs)
        return total, {k: v for k, v in terms.items() if k != regularizers.SHARED_LOGITS}

    return wrapped


def _tiny_cnn_batch():
    model = models.get_model(
        "cnn", num_classes=10, activation="softplus", beta=3.0, channels=(2, 2, 3, 3), hidden=5
    )
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(6, 8, 8, 1))
    y = rng.integers(0, 10, size=6).astype(np.int32)
    return model, x, y


def _float64_state(model, x, tx):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(jax.random.PRNGKey(0), x[:1]))
    return training.create_train_state(params, tx, key=jax.random.PRNGKey(1))


def _step_outputs(model, tx, state, batch, penalty, **kwargs):
    step = jax.jit(training.make_train_step(model.apply_fn, tx, penalty=penalty, **kwargs))
    hlo = step.lower(state, batch).compile().as_text()
    new, metrics = step(state, batch)
    return new.params, metrics, hlo.count(" convolution(")


@pytest.mark.parametrize(
    "name,factory",
    [
        ("ign_fast", lambda: regularizers.input_gradient_norm(impl="fast")),
        ("ign_autodiff", lambda: regularizers.input_gradient_norm(impl="autodiff")),
        ("ign_logit_fast", lambda: regularizers.input_gradient_norm(score="logit", impl="fast")),
        ("cure_autodiff", lambda: regularizers.curvature(impl="autodiff")),
        ("cure_fast", lambda: regularizers.curvature(impl="fast")),
        # Detached source: the backward passes at x and x + δ stay apart, and XLA already
        # merges the two forward passes at x, so sharing saves no convolution here.
        ("lga_autodiff", lambda: regularizers.gradient_alignment(impl="autodiff")),
        (
            "lga_attached_fast",
            lambda: regularizers.gradient_alignment(detach_source=False, impl="fast"),
        ),
        ("hessian_autodiff", lambda: regularizers.hessian_norm(impl="autodiff")),
        ("trades", lambda: regularizers.trades(epsilon=0.1, num_steps=2)),
        ("act_sens_autodiff", "autodiff"),
        ("act_sens_fast", "fast"),
    ],
)
def test_a_penalty_shares_its_logits_with_the_same_step(name, factory):
    model, x, y = _tiny_cnn_batch()
    if name.startswith("act_sens"):  # the model's layer_fn gives the logits of its pass
        impl = factory
        factory = lambda: regularizers.activation_sensitivity(  # noqa: E731
            model.features_fn, impl=impl, layer_fn=model.layer_fn
        )
    tx = optax.sgd(1.0)
    with jax.enable_x64(True):
        state = _float64_state(model, x, tx)
        batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
        pen = regularizers.combine(p=(0.7, factory()))
        _, terms = pen(model.apply_fn, state.params, batch["image"], batch["label"], key=state.key)
        np.testing.assert_allclose(  # the logits at x, offered to the step
            terms[regularizers.SHARED_LOGITS], model.apply_fn(state.params, batch["image"])
        )
        shared, m_shared, convs_shared = _step_outputs(model, tx, state, batch, pen)
        alone, m_alone, convs_alone = _step_outputs(model, tx, state, batch, _unshared(pen))
    assert regularizers.SHARED_LOGITS not in m_shared
    for k in ("ce", "loss", "accuracy"):
        np.testing.assert_allclose(m_shared[k], m_alone[k], rtol=1e-12)
    for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(alone), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # The step's backward pass at x joins the penalty's: fewer convolutions.
    if name == "lga_autodiff":
        assert convs_shared <= convs_alone, (convs_shared, convs_alone)
    else:
        assert convs_shared < convs_alone, (convs_shared, convs_alone)


def test_a_detached_point_offers_no_logits():
    """``fast`` gradient alignment with the source detached never runs the model at x with
    params attached, so it has no logits to share and the step computes its own."""
    model, x, y = _tiny_cnn_batch()
    pen = regularizers.gradient_alignment(impl="fast")
    params = model.init(jax.random.PRNGKey(0), x[:1])
    _, terms = pen(model.apply_fn, params, jnp.asarray(x, jnp.float32), y, key=jax.random.key(0))
    assert regularizers.SHARED_LOGITS not in terms


def test_no_backward_pass_for_a_cross_entropy_of_weight_zero():
    model, x, y = _tiny_cnn_batch()
    tx = optax.sgd(1.0)
    at = regularizers.adversarial_training(epsilon=0.1, num_steps=2)
    pen = regularizers.combine(at=(1.0, at))
    with jax.enable_x64(True):
        state = _float64_state(model, x, tx)
        batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
        zero, m_zero, convs_zero = _step_outputs(model, tx, state, batch, pen, ce_weight=0.0)
        tiny, m_tiny, convs_tiny = _step_outputs(model, tx, state, batch, pen, ce_weight=1e-300)
    np.testing.assert_allclose(m_zero["ce"], m_tiny["ce"], rtol=1e-12)
    np.testing.assert_allclose(m_zero["accuracy"], m_tiny["accuracy"])
    for a, b in zip(jax.tree.leaves(zero), jax.tree.leaves(tiny), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)
    assert convs_zero < convs_tiny, (convs_zero, convs_tiny)
