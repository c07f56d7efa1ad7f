"""Activation sensitivity (METHODS §1.4): fast vs autodiff, brute force, jit, validation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import models, regularizers
from jaxinterp.regularizers._activation_sensitivity import activation_sensitivity

ESTIMATORS = ("jvp", "random_neuron", "finite_difference")
KEY = jax.random.PRNGKey(7)


MODELS = {
    "mlp": dict(name="mlp", num_classes=3, activation="softplus", beta=2.0, hidden=(8, 6)),
    "cnn": dict(name="cnn", num_classes=3, channels=(2, 2, 3, 3), hidden=5),
}


@functools.cache
def _model(name):
    return models.get_model(**MODELS[name])


@functools.cache
def _init(name, shape):
    x = jax.random.normal(jax.random.PRNGKey(1), shape, jnp.float32)
    params = jax.jit(_model(name).init)(jax.random.PRNGKey(0), x[:1])
    return np.asarray(x), jax.tree.map(np.asarray, params)


def _setup(name, shape, dtype=np.float32):
    """``(model, x, params)``, arrays as numpy ``dtype`` (float64 needs ``jax.enable_x64``)."""
    x, params = _init(name, shape)
    return _model(name), x.astype(dtype), jax.tree.map(lambda a: a.astype(dtype), params)


def _values_and_grads(penalties, params, x, key=KEY):
    """``[((R, diagnostics), dR/dparams) for each penalty]``, all under one ``jax.jit``."""

    def run(p, k):
        return [
            jax.value_and_grad(lambda q, pen=pen: pen(None, q, x, None, key=k), has_aux=True)(p)
            for pen in penalties
        ]

    return jax.tree.map(np.asarray, jax.jit(run)(params, key))  # numpy keeps float64


def _assert_trees_close(a, b, rtol, atol=0.0):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def _with_grid_layer(model):
    """``model``'s features plus ``"grid"``, a ``[B, 3, 3, 2]`` layer (multi-axis units)."""

    def features_fn(params, x):
        grid = jnp.tanh(x * params["scale"][None, None, None, :] + 0.3)
        return {**model.features_fn(params["model"], x), "grid": grid}

    return features_fn


def _brute_force(features_fn, params, x):
    """``mean_b ‖J_l(x_b)‖²_F / n_l`` per layer from full per-example Jacobians."""

    def per_layer(p):
        jacs = jax.vmap(jax.jacfwd(lambda z: jax.tree.map(lambda a: a[0], features_fn(p, z[None]))))
        out = {}
        for name, jac in jacs(x).items():
            n = np.prod(jac.shape[1 : jac.ndim - x.ndim + 1])
            out[name] = jnp.mean(jnp.sum(jnp.square(jac), axis=tuple(range(1, jac.ndim)))) / n
        return out

    return {name: float(v) for name, v in jax.jit(per_layer)(params).items()}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fast_matches_autodiff_mlp(estimator):
    weights = {"dense1": 0.5, "dense2": 2.0}
    with jax.enable_x64(True):
        model, x, params = _setup("mlp", (4, 3, 3, 1), np.float64)
        penalties = [
            activation_sensitivity(
                model.features_fn,
                layer_weights=weights,
                estimator=estimator,
                num_probes=3,
                fd_step=1e-5,
                impl=impl,
            )
            for impl in ("fast", "autodiff")
        ]
        ((value, diags), grads), ((value_ad, diags_ad), grads_ad) = _values_and_grads(
            penalties, params, x
        )
    assert set(diags) == {"dense1", "dense2"}
    assert value.dtype == np.float64 and float(value) > 0
    np.testing.assert_allclose(value, value_ad, rtol=1e-9)
    _assert_trees_close(diags, diags_ad, rtol=1e-9)
    _assert_trees_close(grads, grads_ad, rtol=1e-9, atol=1e-14)
    total = sum(w * diags[n] for n, w in weights.items())
    np.testing.assert_allclose(value, total, rtol=1e-12)


def test_fast_matches_autodiff_cnn():
    # Conv layers and max-pooling; random_neuron on multi-axis layers: the brute-force test.
    with jax.enable_x64(True):
        model, x, params = _setup("cnn", (2, 4, 4, 1), np.float64)
        penalties = [
            activation_sensitivity(model.features_fn, num_probes=2, impl=impl)
            for impl in ("fast", "autodiff")
        ]
        ((value, diags), grads), ((value_ad, _), grads_ad) = _values_and_grads(penalties, params, x)
    assert set(diags) == {"conv1", "conv2", "conv3", "conv4", "fc1"}
    np.testing.assert_allclose(value, value_ad, rtol=1e-9)
    _assert_trees_close(grads, grads_ad, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("impl", ["fast", "autodiff"])
def test_layer_fn_gives_the_same_penalty_and_the_logits_of_its_pass(impl):
    """With the model's ``layer_fn`` the ``"jvp"`` estimator computes the same value and
    params-gradient as from ``features_fn``, and returns the logits at ``x`` as well."""
    with jax.enable_x64(True):
        model, x, params = _setup("cnn", (3, 4, 4, 1), np.float64)
        penalties = [
            activation_sensitivity(model.features_fn, num_probes=2, impl=impl, layer_fn=fn)
            for fn in (model.layer_fn, None)
        ]
        ((value, diags), grads), ((value_f, diags_f), grads_f) = _values_and_grads(
            penalties, params, x
        )
        logits = np.asarray(model.apply_fn(params, x))
    np.testing.assert_allclose(diags.pop(regularizers.SHARED_LOGITS), logits, rtol=1e-12)
    assert regularizers.SHARED_LOGITS not in diags_f
    np.testing.assert_allclose(value, value_f, rtol=1e-12)
    _assert_trees_close(diags, diags_f, rtol=1e-12)
    _assert_trees_close(grads, grads_f, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("estimator", ["jvp", "random_neuron"])
def test_many_probes_approach_brute_force(estimator):
    with jax.enable_x64(True):
        model, x, model_params = _setup("mlp", (4, 3, 3, 1), np.float64)
        features_fn = _with_grid_layer(model)
        params = {"model": model_params, "scale": np.array([0.7, -1.3])}
        exact = _brute_force(features_fn, params, x)
        penalty = activation_sensitivity(features_fn, estimator=estimator, num_probes=2000)
        value, diags = jax.jit(lambda p: penalty(None, p, x, None, key=KEY))(params)
    assert set(exact) == set(diags) == {"dense1", "dense2", "grid"}
    for name, ref in exact.items():
        assert abs(float(diags[name]) / ref - 1) < 0.1, (name, float(diags[name]), ref)
    np.testing.assert_allclose(value, sum(exact.values()), rtol=0.1)


def test_finite_difference_matches_jvp_with_same_probes():
    with jax.enable_x64(True):
        model, x, params = _setup("mlp", (4, 3, 3, 1), np.float64)
        penalties = [
            activation_sensitivity(model.features_fn, num_probes=8),
            activation_sensitivity(
                model.features_fn, estimator="finite_difference", num_probes=8, fd_step=1e-6
            ),
        ]
        ((value, diags), grads), ((value_fd, diags_fd), grads_fd) = _values_and_grads(
            penalties, params, x
        )
    np.testing.assert_allclose(value_fd, value, rtol=1e-3)
    _assert_trees_close(diags_fd, diags, rtol=1e-3)
    _assert_trees_close(grads_fd, grads, rtol=1e-3, atol=1e-6)


def test_normalize_divides_by_mean_squared_activation():
    with jax.enable_x64(True):
        model, x, params = _setup("mlp", (1, 3, 3, 1), np.float64)
        plain = activation_sensitivity(model.features_fn, num_probes=4)
        normed = activation_sensitivity(model.features_fn, num_probes=4, normalize=True)
        acts, (_, diags), (value, diags_n) = jax.tree.map(
            np.asarray,
            jax.jit(
                lambda p: (
                    model.features_fn(p, x),
                    plain(None, p, x, None, key=KEY),
                    normed(None, p, x, None, key=KEY),
                )
            )(params),
        )
    for name, act in acts.items():
        denom = np.mean(np.square(act)) + 1e-6
        np.testing.assert_allclose(diags_n[name], diags[name] / denom, rtol=1e-10)
    np.testing.assert_allclose(value, sum(diags_n.values()), rtol=1e-12)


@pytest.mark.parametrize("estimator", ["jvp", "random_neuron"])
def test_layer_probes_do_not_depend_on_selection(estimator):
    model, x, params = _setup("mlp", (4, 3, 3, 1))
    both = activation_sensitivity(model.features_fn, estimator=estimator, num_probes=2)
    one = activation_sensitivity(
        model.features_fn,
        layers=["dense2"],
        layer_weights={"dense2": 3.0},
        estimator=estimator,
        num_probes=2,
    )
    (_, diags), (value, diags_one) = jax.jit(
        lambda p: (both(None, p, x, None, key=KEY), one(None, p, x, None, key=KEY))
    )(params)
    assert set(diags_one) == {"dense2"}
    np.testing.assert_allclose(diags_one["dense2"], diags["dense2"], rtol=1e-6)
    np.testing.assert_allclose(value, 3.0 * diags["dense2"], rtol=1e-6)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_jit_grad_float32_and_keys(estimator):
    model, x, params = _setup("mlp", (4, 3, 3, 1))
    penalty = activation_sensitivity(model.features_fn, estimator=estimator, num_probes=2)
    loss = lambda p, k: penalty(None, p, x, None, key=k)[0]  # noqa: E731
    step = jax.jit(jax.value_and_grad(loss))
    (first, grads), (again, _), (other, _) = (
        step(params, k) for k in (KEY, KEY, jax.random.PRNGKey(8))
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
    assert first.dtype == jnp.float32 and float(first) == float(again)
    assert float(other) != float(first)
    # New-style typed keys trace as well.
    assert jax.eval_shape(loss, params, jax.random.key(7)).dtype == jnp.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_probes": 0}, "num_probes"),
        ({"num_probes": 2.0}, "num_probes"),
        ({"num_probes": True}, "num_probes"),
        ({"estimator": "hutchinson"}, "estimator"),
        ({"impl": "torch"}, "impl"),
        ({"fd_step": 0.0}, "fd_step"),
        ({"fd_step": -1e-3}, "fd_step"),
        ({"fd_step": float("nan")}, "fd_step"),
        ({"layer_weights": {"dense1": -1.0}}, "layer_weights"),
        ({"layer_weights": {"dense1": float("inf")}}, "layer_weights"),
        ({"layers": "dense1"}, "layers"),
        ({"layers": []}, "layers"),
        ({"layers": ["dense1", 2]}, "layers"),
        ({"layers": ["dense1", "dense1"]}, "layers"),
        ({"layers": ["dense1"], "layer_weights": {"dense2": 1.0}}, "layer_weights"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        activation_sensitivity(_model("mlp").features_fn, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"layers": ["dense1", "dense7"]}, {"layer_weights": {"dense7": 1.0}}]
)
def test_unknown_layer_lists_available_names(kwargs):
    model, x, params = _setup("mlp", (2, 3, 3, 1))
    penalty = activation_sensitivity(model.features_fn, **kwargs)
    with pytest.raises(ValueError, match=r"dense7.*\['dense1', 'dense2'\]"):
        jax.eval_shape(lambda p: penalty(None, p, x, None, key=KEY), params)


def test_no_layers_raises():
    penalty = activation_sensitivity(lambda params, x: {})
    with pytest.raises(ValueError, match="no layers"):
        penalty(None, {}, np.zeros((2, 3, 3, 1), np.float32), None, key=KEY)
