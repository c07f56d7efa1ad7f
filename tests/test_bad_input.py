"""Bad input is refused with a message that names it, or marked NaN where it cannot be refused.

Empty batches, raw uint8/integer images, channels-first images, out-of-range labels under
``jit``, NaN attributions and mistyped model hyperparameters.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attacks, attribution, core, metrics, models, regularizers
from jaxinterp.core import checks
from jaxinterp.core.losses import label_logit
from jaxinterp.core.scores import SCORES, score_of_logits

K = 3


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def apply_fn(params, x):
    """A softplus MLP on the flattened input, ``[B, ...] -> [B, 3]``, for 4×4×1 images."""
    h = jax.nn.softplus(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"][None])
    return h @ params["w2"] + params["b2"][None]


def _params(d_in: int = 16, hidden: int = 6):
    k1, k2 = jax.random.split(_key(1))
    return {
        "w1": jax.random.normal(k1, (d_in, hidden)) / math.sqrt(d_in),
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, K)) / math.sqrt(hidden),
        "b2": jnp.zeros(K),
    }


PARAMS = _params()
X = jax.random.uniform(_key(2), (2, 4, 4, 1), minval=0.1, maxval=0.9)
Y = jnp.array([0, 2])
A = jax.random.normal(_key(3), X.shape)


def grad_attribution(fn, params, x, y):
    return attribution.gradient(attribution.class_score(fn, params, y), x)


def _explain(z):
    return grad_attribution(apply_fn, PARAMS, z, Y[: z.shape[0]])


def _prob(y):
    return attribution.class_score(apply_fn, PARAMS, y, kind="softmax")


# Every public function that takes model inputs x: name -> f(x, y) (the argument is "x"
# unless the name says otherwise).
INPUT_CALLS = {
    "attribution.gradient": lambda x, y: attribution.gradient(
        attribution.class_score(apply_fn, PARAMS, y), x
    ),
    "attribution.integrated_gradients": lambda x, y: attribution.integrated_gradients(
        attribution.class_score(apply_fn, PARAMS, y), x, num_steps=2
    ),
    "explainer smoothgrad": lambda x, y: attribution.EXPLAINERS.build("smoothgrad", num_samples=2)(
        apply_fn, PARAMS, x, y, key=_key(4)
    ),
    "explainer relex": lambda x, y: attribution.relex(num_iterations=1, num_samples=1)(
        apply_fn, PARAMS, x, y, key=_key(4)
    ),
    "explainer random": lambda x, y: attribution.random_map()(apply_fn, PARAMS, x, y, key=_key(4)),
    "attacks.fgsm": lambda x, y: attacks.fgsm(epsilon=0.1)(apply_fn, PARAMS, x, y),
    "attacks.pgd": lambda x, y: attacks.pgd(epsilon=0.1, num_steps=1)(
        apply_fn, PARAMS, x, y, key=_key(5)
    ),
    "attacks.boundary_search": lambda x, y: attacks.boundary_search(
        epsilons=(0.5,), pgd_steps=1, cw_steps=1, cw_binary_search_steps=1
    )(apply_fn, PARAMS, x, y),
    "metrics.ape": lambda x, y: metrics.ape(
        apply_fn, PARAMS, x, y, jnp.ones(x.shape), epsilon=0.1, num_steps=1
    ),
    "metrics.retrieval x_adv": lambda x, y: metrics.retrieval(
        apply_fn, PARAMS, x, jnp.ones(x.shape), y
    ),
    "metrics.retrieval_specificity x_adv": lambda x, y: metrics.retrieval_specificity(
        apply_fn, PARAMS, x, jnp.ones(x.shape), jnp.ones(x.shape), y, (y + 1) % K
    ),
    "metrics.perturbation_curve": lambda x, y: metrics.perturbation_curve(
        _prob(y), x, jnp.ones(x.shape), num_steps=2
    ),
    "metrics.deletion_auc": lambda x, y: metrics.deletion_auc(
        _prob(y), x, jnp.ones(x.shape), num_steps=2
    ),
    "metrics.insertion_auc": lambda x, y: metrics.insertion_auc(
        _prob(y), x, jnp.ones(x.shape), num_steps=2
    ),
    "metrics.infidelity": lambda x, y: metrics.infidelity(
        _prob(y), x, jnp.ones(x.shape), key=_key(6), num_samples=2
    ),
    "metrics.completeness_delta": lambda x, y: metrics.completeness_delta(
        _prob(y), x, jnp.ones(x.shape), None
    ),
    "metrics.max_sensitivity": lambda x, y: metrics.max_sensitivity(
        lambda z: jnp.ones(z.shape, jnp.float32), x, key=_key(7), num_samples=2
    ),
    "metrics.random_perturbation_similarity": lambda x, y: metrics.random_perturbation_similarity(
        lambda z: jnp.ones(z.shape, jnp.float32), x, key=_key(7), num_draws=2
    ),
    "metrics.robust_accuracy": lambda x, y: metrics.robust_accuracy(
        apply_fn, PARAMS, x, y, [attacks.fgsm(epsilon=0.1)]
    ),
    "regularizers.input_gradient_norm": lambda x, y: regularizers.input_gradient_norm()(
        apply_fn, PARAMS, x, y
    ),
    "regularizers.hessian_norm": lambda x, y: regularizers.hessian_norm()(
        apply_fn, PARAMS, x, y, key=_key(8)
    ),
    "regularizers.trades": lambda x, y: regularizers.trades(num_steps=1)(
        apply_fn, PARAMS, x, y, key=_key(8)
    ),
    # The bundled models check their input before any layer sees it.
    **{
        f"models.{name}": functools.partial(lambda name, x, y: _bundled(name)(x), name)
        for name in models.MODELS
    },
}


@functools.cache
def _bundled(name: str):
    """``x -> logits`` of a small bundled model (params for 4×4×1 inputs)."""
    kwargs = {
        "mlp": {"hidden": (4,)},
        "cnn": {"channels": (2, 2, 2, 2), "hidden": 4},
        "resnet18": {"width": 2, "num_groups": 1},
    }[name]
    model = models.get_model(name, num_classes=K, **kwargs)
    params = jax.jit(model.init)(_key(9), X)
    return lambda x: model.apply_fn(params, x)


def _arg(name: str) -> str:
    return "x_adv" if name.endswith("x_adv") else "x"


# ------------------------------------------------------------------------ 1. empty batch


def test_checks_refuse_an_empty_batch():
    with pytest.raises(ValueError, match=r"x has an empty batch \(B = 0\)") as e:
        checks.array(jnp.zeros((0, 3)), "x")
    assert not isinstance(e.value, TypeError)
    with pytest.raises(ValueError, match=r"maps has an empty batch \(B = 0\)"):
        checks.array(jnp.zeros((0, 4, 4)), "maps", cast=True)
    with pytest.raises(ValueError, match=r"y has an empty batch \(B = 0\)"):
        checks.labels(jnp.zeros((0,), jnp.int32), 0, num_classes=3)
    # Per-example values of no example are an empty state, not an error.
    assert checks.array(jnp.zeros((0,)), "values", allow_empty=True).shape == (0,)
    assert metrics.Accumulator.from_values(np.zeros(0, np.float32)).compute()["count"] == 0


@pytest.mark.parametrize("name", ["attribution.gradient", "attacks.fgsm", "metrics.ape"])
def test_an_empty_batch_is_refused_by_the_public_functions(name):
    with pytest.raises(ValueError, match=r"x has an empty batch \(B = 0\)"):
        INPUT_CALLS[name](jnp.zeros((0, 4, 4, 1)), jnp.zeros((0,), jnp.int32))
    with pytest.raises(ValueError, match=r"attribution has an empty batch"):
        metrics.gini(jnp.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"x has an empty batch"):
        regularizers.input_gradient_norm()(apply_fn, PARAMS, jnp.zeros((0, 16)), jnp.zeros(0))


# ------------------------------------------------------- 2. raw uint8 / integer images


@pytest.mark.parametrize("name", sorted(INPUT_CALLS))
def test_uint8_images_are_refused_with_the_conversion_hint(name):
    arg = _arg(name)
    raw = (np.asarray(X) * 255).astype(np.uint8)
    with pytest.raises(checks.ArgumentTypeError, match=rf"{arg} must be a float array") as e:
        INPUT_CALLS[name](raw, Y)
    assert f"{arg}.astype(jnp.float32) / 255" in str(e.value)
    with pytest.raises(TypeError, match=rf"{arg} must be a float array.*int32"):
        INPUT_CALLS[name](raw.astype(np.int32), Y)
    with pytest.raises(TypeError, match=rf"{arg} must be a float array.*bool"):
        INPUT_CALLS[name](raw > 128, Y)


def test_maps_and_masks_are_still_cast():
    m = jnp.arange(2 * 16).reshape(2, 16) % 5
    np.testing.assert_allclose(metrics.gini(m), metrics.gini(m.astype(jnp.float32)))
    np.testing.assert_allclose(metrics.pearson(m, m), 1.0, atol=1e-6)
    assert metrics.energy_game(m.reshape(2, 4, 4) > 2, jnp.ones((2, 4, 4), bool)).shape == (2,)
    checks.array(jnp.zeros((2, 3), jnp.uint8), "mask", cast=True)


# -------------------------------------------------------------------------- 3. NCHW hint


@pytest.mark.parametrize("name", sorted(INPUT_CALLS))
def test_channels_first_images_are_refused_with_the_transpose(name):
    arg = _arg(name)
    for channels in (1, 3):
        x = jnp.full((2, channels, 5, 6), 0.5)
        with pytest.raises(ValueError, match=r"expects channels last \[B, H, W, C\]") as e:
            INPUT_CALLS[name](x, Y)
        assert f"{arg} looks channels-first" in str(e.value), e.value
        assert f"jnp.transpose({arg}, (0, 2, 3, 1))" in str(e.value)


def test_channels_last_shapes_near_the_rule_are_accepted():
    for shape in [(2, 3, 3, 1), (2, 1, 4, 8), (2, 3, 8, 4), (2, 8, 8, 3), (2, 2, 8, 8)]:
        assert checks.array(jnp.zeros(shape), image=True).shape == shape
    with pytest.raises(ValueError, match="channels-first"):
        checks.array(jnp.zeros((2, 1, 5, 5)), image=True)
    # Maps and attributions of any shape are not images: no layout rule.
    a = jax.random.normal(_key(9), (2, 3, 8, 8))
    assert metrics.gini(a).shape == (2,) and metrics.pearson(a, a).shape == (2,)


# ------------------------------------------------------------------ 4. labels under jit


def test_out_of_range_labels_under_jit_give_nan():
    logits = jnp.array([[0.5, 1.0, 2.0], [1.0, 0.0, 0.0], [0.3, 0.2, 0.1]])
    labels = jnp.array([-1, K, 1])
    fns = {
        "ce_loss": core.ce_loss,
        "margin_loss": core.margin_loss,
        "label_logit": label_logit,
        **{f"score {kind}": functools.partial(score_of_logits, kind=kind) for kind in SCORES},
        **{
            f"class_score {kind}": lambda z, t, kind=kind: core.class_score(
                lambda p, v: v, None, t, kind
            )(z)
            for kind in SCORES
        },
    }
    for name, fn in fns.items():
        out = np.asarray(jax.jit(fn)(logits, labels))
        assert np.all(np.isnan(out[:2])), (name, out)
        np.testing.assert_allclose(out[2], fn(logits[2:], labels[2:])[0], rtol=1e-6)
        with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
            fn(logits, labels)  # Concrete labels are still range-checked.
    # The valid examples keep their gradient; the invalid ones get none (no NaN leaks).
    g = jax.jit(jax.grad(lambda z, t: jnp.nansum(core.ce_loss(z, t))))(logits, labels)
    assert np.all(np.isfinite(g)) and np.all(g[:2] == 0) and np.any(g[2] != 0)


def test_apgd_dlr_losses_and_ape_under_jit_give_nan():
    logits = jax.random.normal(_key(10), (3, 5))
    labels = jnp.array([-1, 5, 2])
    for fn in (attacks.dlr_loss, lambda z, t: attacks.dlr_targeted_loss(z, t, (t + 1) % 5)):
        out = np.asarray(jax.jit(fn)(logits, labels))
        assert np.all(np.isnan(out[:2])) and np.isfinite(out[2])
    y = jnp.array([K, 1])
    ape = jax.jit(lambda y: metrics.ape(apply_fn, PARAMS, X, y, A, epsilon=0.1, num_steps=1))
    out = ape(y)
    assert np.isnan(out["ape"][0]) and np.isfinite(out["ape"][1])
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        metrics.ape(apply_fn, PARAMS, X, jnp.array([-1, 1]), A, epsilon=0.1, num_steps=1)
    with pytest.raises(ValueError, match=r"clean_label must lie in \[0, 3\)"):
        metrics.retrieval(apply_fn, PARAMS, X, A, jnp.array([0, K]))
    hit = jax.jit(lambda y: metrics.retrieval(apply_fn, PARAMS, X, A, y))(jnp.array([-1, 1]))
    assert np.isnan(hit[0]) and np.isfinite(hit[1])


# ------------------------------------------------------- 5. NaN attributions, NaN metrics

B = 3
_M = jax.random.uniform(_key(11), (B, 8, 8))
_N = jax.random.uniform(_key(12), (B, 8, 8))
_XB = jax.random.uniform(_key(13), (B, 4, 4, 1), minval=0.1, maxval=0.9)
_AB = jax.random.normal(_key(14), (B, 4, 4, 1))
_YB = jnp.array([0, 1, 2])
_BOX = jnp.array([[0.0, 0.0, 4.0, 4.0], [2.0, 1.0, 6.0, 5.0], [4.0, 4.0, 8.0, 8.0]])
_OTHER = jnp.array([[4.0, 4.0, 8.0, 8.0], [0.0, 0.0, 2.0, 4.0], [0.0, 0.0, 4.0, 4.0]])
_TOPK = attacks.topk_attack(grad_attribution, epsilon=0.1, num_steps=1, k=3)


def _nan_explain(z):
    return grad_attribution(apply_fn, PARAMS, z, _YB).at[1, 0, 0, 0].set(jnp.nan)


# name -> (f(*maps), maps): the last map gets a NaN in example 1, the first an infinity.
NAN_CASES = {
    "energy_game": (lambda a: metrics.energy_game(a, _BOX), (_M,)),
    "distractor_game": (lambda a: metrics.distractor_game(a, _BOX, _OTHER), (_M,)),
    "pointing_game": (lambda a: metrics.pointing_game(a, _BOX, tolerance=1.0), (_M,)),
    "gini": (metrics.gini, (_AB,)),
    "spatial_coherence": (lambda a: metrics.spatial_coherence(a, key=_key(15)), (_M,)),
    "perturbation_curve": (
        lambda a: metrics.perturbation_curve(_prob(_YB), _XB, a, num_steps=2),
        (_AB,),
    ),
    "deletion_auc": (lambda a: metrics.deletion_auc(_prob(_YB), _XB, a, num_steps=2), (_AB,)),
    "insertion_auc": (lambda a: metrics.insertion_auc(_prob(_YB), _XB, a, num_steps=2), (_AB,)),
    "infidelity": (
        lambda a: metrics.infidelity(_prob(_YB), _XB, a, key=_key(16), num_samples=2),
        (_AB,),
    ),
    "completeness_delta": (
        lambda a: metrics.completeness_delta(_prob(_YB), _XB, a, None),
        (_AB,),
    ),
    "retrieval": (lambda a: metrics.retrieval(apply_fn, PARAMS, _XB, a, _YB), (_AB,)),
    "retrieval_specificity": (
        lambda a: metrics.retrieval_specificity(
            apply_fn, PARAMS, _XB, a, jnp.abs(a), _YB, (_YB + 1) % K, fraction=0.25
        ),
        (_AB,),
    ),
    "ape": (
        lambda a: metrics.ape(apply_fn, PARAMS, _XB, _YB, a, epsilon=0.1, num_steps=1),
        (_AB,),
    ),
    "topk_intersection": (functools.partial(metrics.topk_intersection, k=5), (_M, _N)),
    "spearman": (metrics.spearman, (_M, _N)),
    "kendall_tau": (metrics.kendall_tau, (_M, _N)),
    "pearson": (metrics.pearson, (_M, _N)),
    "ssim": (metrics.ssim, (_M, _N)),
    "cosine_similarity": (metrics.cosine_similarity, (_M, _N)),
    "mse": (metrics.mse, (_M, _N)),
    "center_of_mass_shift": (metrics.center_of_mass_shift, (_M, _N)),
    "center_of_mass": (metrics.center_of_mass, (_M,)),
    "heatmap": (metrics.heatmap, (_AB,)),
    "average_ranks": (metrics.average_ranks, (_M.reshape(B, -1),)),
    "attack_robustness": (
        lambda a: metrics.attack_robustness(
            _TOPK, grad_attribution, apply_fn, PARAMS, _XB, _YB, k=3, clean_attribution=a
        ),
        (_AB,),
    ),
}
# Metrics of an explain_fn: the explanation is NaN for example 1.
EXPLAIN_CASES = {
    "max_sensitivity": lambda explain: metrics.max_sensitivity(
        explain, _XB, key=_key(17), num_samples=2
    ),
    "random_perturbation_similarity": lambda explain: metrics.random_perturbation_similarity(
        explain, _XB, key=_key(18), num_draws=2, similarity=("pearson", "cosine", "mse")
    ),
}
_MAP_KEYS = ("topk_intersection", "spearman", "kendall_tau", "center_of_mass_shift")
_NOT_MAP_METRICS = {
    "Accumulator", "accumulate", "SIMILARITIES", "SUBSTRATES", "box_mask", "robust_accuracy",
}  # fmt: skip


def _leaves(out, name):
    if name == "attack_robustness":
        return [out[k] for k in _MAP_KEYS]  # label_kept, attack_score: not of the map.
    return jax.tree.leaves(out)


@pytest.mark.parametrize("name", sorted(NAN_CASES) + sorted(EXPLAIN_CASES))
def test_a_nan_attribution_gives_nan_for_its_example_only(name):
    # Under jit (the Python-level checks and the NaN marking run while tracing); one
    # compilation serves the clean, NaN and infinite maps.
    if name in EXPLAIN_CASES:
        fn = EXPLAIN_CASES[name]
        clean = _jit(lambda: fn(_explain_b))()
        outs = [_jit(lambda: fn(_nan_explain))()]
    else:
        fn, maps = NAN_CASES[name]
        jitted = _jit(fn)
        broken, inf = list(maps), list(maps)
        broken[-1] = maps[-1].at[(1,) + (0,) * (maps[-1].ndim - 1)].set(jnp.nan)
        inf[0] = maps[0].at[(1,) + (0,) * (maps[0].ndim - 1)].set(-jnp.inf)
        clean = jitted(*maps)
        outs = [jitted(*broken), jitted(*inf)]  # An infinity is no map either.
    for out in outs:
        for v, c in zip(_leaves(out, name), _leaves(clean, name), strict=True):
            v, c = np.asarray(v), np.asarray(c)
            assert np.all(np.isnan(v[1])), (name, v)
            assert np.all(np.isfinite(c)), (name, c)
            np.testing.assert_allclose(v[[0, 2]], c[[0, 2]], rtol=1e-5, atol=1e-6, err_msg=name)


def _jit(fn):
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


def _explain_b(z):
    return grad_attribution(apply_fn, PARAMS, z, _YB)


def test_every_metric_of_a_map_is_covered():
    covered = set(NAN_CASES) | set(EXPLAIN_CASES)
    assert set(metrics.__all__) - _NOT_MAP_METRICS == covered


def test_metrics_topk_intersection_is_the_checked_core_one():
    from jaxinterp.core.ops import topk_intersection

    key = _key(19)
    np.testing.assert_array_equal(
        metrics.topk_intersection(_M, _N, 7, key=key), topk_intersection(_M, _N, 7, key=key)
    )
    with pytest.raises(ValueError, match="k must be an integer >= 1 and <= 64"):
        metrics.topk_intersection(_M, _N, 65)
    with pytest.raises(ValueError, match="map_b must have the shape of map_a"):
        metrics.topk_intersection(_M, _N[:, :4], 3)


# ------------------------------------------------- 6. model hyperparameters type-checked

_CONV = models.loop_safe_conv


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: models.MLP(num_classes=10, hidden="64"), "hidden"),
        (lambda: models.MLP(num_classes=10, hidden=(64, 2.5)), r"hidden\[1\]"),
        (lambda: models.MLP(num_classes=10, beta="3"), "beta"),
        (lambda: models.MLP(num_classes="10"), "num_classes"),
        (lambda: models.MLP(num_classes=10, activation=3), "activation"),
        (lambda: models.LeNet(num_classes=10, channels=(16, "a", 32, 32)), r"channels\[1\]"),
        (lambda: models.LeNet(num_classes=10, hidden="256"), "hidden"),
        (lambda: models.LeNet(num_classes=10, conv="conv"), "conv"),
        (lambda: models.ResNet18(num_classes=10, width="64"), "width"),
        (lambda: models.ResNet18(num_classes=10, num_groups=8.0), "num_groups"),
        (lambda: models.BasicBlock(channels="8", strides=1, act=jax.nn.relu), "channels"),
        (lambda: models.BasicBlock(channels=8, strides=None, act=jax.nn.relu), "strides"),
        (lambda: models.BasicBlock(channels=8, strides=1, act="relu"), "act"),
        (lambda: models.get_model("mlp", num_classes=10, hidden="64"), "hidden"),
        (lambda: models.get_model("cnn", num_classes=10, channels=(16, "a", 8, 8)), "channels"),
        (lambda: models.get_model("mlp", num_classes=10, beta="3"), "beta"),
        (lambda: models.get_model("resnet18", num_classes=10, width=True), "width"),
        (lambda: models.get_model(3, num_classes=10), "name"),
        (lambda: models.get_model("cnn", num_classes=10, activation=None), "activation"),
        (lambda: models.get_activation(["relu"]), "activation"),
        (lambda: models.from_linen("mlp"), "module"),
        (lambda: models.from_linen(models.MLP(num_classes=2), name=3), "name"),
        (lambda: models.softplus_surrogate("mlp", beta=3.0), "model_module"),
        (lambda: models.softplus_surrogate(models.MLP(num_classes=2), beta="3"), "beta"),
    ],
)
def test_model_hyperparameters_of_the_wrong_type(build, field):
    with pytest.raises(checks.ArgumentTypeError, match=field):
        build()


def test_model_hyperparameters_of_the_right_type_still_build():
    assert isinstance(models.BasicBlock(channels=8, strides=2, act=jax.nn.relu), nn.Module)
    assert models.get_model("cnn", num_classes=3, channels=(4, 4, 8, 8), hidden=8).name == "cnn"
    assert models.get_model("mlp", num_classes=3, hidden=[8, np.int64(4)]).name == "mlp"
    assert models.LeNet(num_classes=3, conv=_CONV).conv is _CONV
