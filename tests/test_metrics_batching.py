"""Every metric: per-example values, the same batched as one example at a time, and jitted."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attacks, attribution, metrics

B = 3


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def mlp_apply(params, x):
    """A softplus MLP on flattened inputs, ``[B, ...] -> [B, 3]``."""
    h = jax.nn.softplus(3.0 * (x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"][None]))
    return h / 3.0 @ params["w2"] + params["b2"][None]


def _params(d_in: int = 64, hidden: int = 12, classes: int = 3):
    k1, k2, k3 = jax.random.split(_key(100), 3)
    return {
        "w1": jax.random.normal(k1, (d_in, hidden)) / math.sqrt(d_in),
        "b1": 0.1 * jax.random.normal(k3, (hidden,)),
        "w2": jax.random.normal(k2, (hidden, classes)) / math.sqrt(hidden),
        "b2": jnp.zeros(classes),
    }


PARAMS = _params()


def grad_attribution(apply_fn, params, x, label):
    return attribution.gradient(attribution.class_score(apply_fn, params, label), x)


def explain(label):
    return lambda z: grad_attribution(mlp_apply, PARAMS, z, label)


def prob(label):
    return attribution.class_score(mlp_apply, PARAMS, label, kind="softmax")


TOPK = attacks.topk_attack(grad_attribution, epsilon=0.1, num_steps=3, k=4)

# name -> (function of batched arrays, names of its batched arguments).
CASES = {
    "deletion_auc": (
        lambda x, a, y: metrics.deletion_auc(prob(y), x, a, num_steps=4, substrate="mean"),
        "x a y",
    ),
    "insertion_auc": (
        lambda x, a, y: metrics.insertion_auc(prob(y), x, a, num_steps=4, chunk_size=2),
        "x a y",
    ),
    "infidelity": (
        lambda x, a, y: metrics.infidelity(prob(y), x, a, key=_key(1), num_samples=4),
        "x a y",
    ),
    "completeness_delta": (
        lambda x, a, y: metrics.completeness_delta(prob(y), x, a, 0.5),
        "x a y",
    ),
    "max_sensitivity": (
        lambda x, y: metrics.max_sensitivity(explain(y), x, key=_key(2), num_samples=3),
        "x y",
    ),
    "rps_pearson": (
        lambda x, y: metrics.random_perturbation_similarity(
            explain(y), x, key=_key(3), num_draws=3
        ),
        "x y",
    ),
    "heatmap": (metrics.heatmap, "a"),
    "pearson": (metrics.pearson, "m n"),
    "cosine_similarity": (metrics.cosine_similarity, "m n"),
    "mse": (metrics.mse, "m n"),
    "ssim": (metrics.ssim, "m n"),
    "spearman": (metrics.spearman, "m n"),
    "kendall_tau": (metrics.kendall_tau, "m n"),
    "center_of_mass_shift": (metrics.center_of_mass_shift, "m n"),
    "topk_intersection": (functools.partial(metrics.topk_intersection, k=5), "m n"),
    "box_mask": (lambda box: metrics.box_mask(box, (8, 8)), "box"),
    "energy_game_box": (metrics.energy_game, "a box"),
    "energy_game_mask": (metrics.energy_game, "m mask"),
    "distractor_game": (metrics.distractor_game, "a box mask"),
    "pointing_game": (functools.partial(metrics.pointing_game, tolerance=1.0), "a box"),
    "gini": (metrics.gini, "a"),
    "spatial_coherence": (lambda a: metrics.spatial_coherence(a, key=_key(7)), "a"),
    "retrieval_specificity": (
        lambda x, a, m, y: metrics.retrieval_specificity(
            mlp_apply, PARAMS, x, a, m[..., None], y, (y + 1) % 3, fraction=0.25, key=_key(8)
        ),
        "x a m y",
    ),
    "ape_margin": (
        lambda x, a, y: metrics.ape(
            mlp_apply, PARAMS, x, y, a, epsilon=0.1, num_steps=3, score="margin", key=_key(9)
        ),
        "x a y",
    ),
    "retrieval": (lambda x, a, y: metrics.retrieval(mlp_apply, PARAMS, x, a, y), "x a y"),
    "ape": (
        lambda x, a, y: metrics.ape(mlp_apply, PARAMS, x, y, a, epsilon=0.1, num_steps=3),
        "x a y",
    ),
    "robust_accuracy": (
        lambda x, y: metrics.robust_accuracy(
            mlp_apply, PARAMS, x, y, [attacks.fgsm(epsilon=0.1, bounds=None)]
        ),
        "x y",
    ),
    "attack_robustness": (
        lambda x, y: metrics.attack_robustness(
            TOPK, grad_attribution, mlp_apply, PARAMS, x, y, k=4
        ),
        "x y",
    ),
}


def _inputs() -> dict[str, jax.Array]:
    keys = jax.random.split(_key(10), 6)
    x = jax.random.uniform(keys[0], (B, 8, 8, 1), minval=0.05, maxval=0.95)
    y = jnp.array([0, 1, 2])
    corners = jax.random.randint(keys[4], (B, 2), 0, 4).astype(jnp.float32)
    box = jnp.concatenate([corners, corners + jnp.array([[4.0, 3.0]])], axis=1)
    return {
        "x": x,
        "y": y,
        "a": jax.random.normal(keys[1], (B, 8, 8, 1)),
        "m": jax.random.uniform(keys[2], (B, 8, 8)),
        "n": jax.random.uniform(keys[3], (B, 8, 8)),
        "box": box,
        "mask": jax.random.bernoulli(keys[5], 0.3, (B, 8, 8)),
    }


INPUTS = _inputs()


def _close(actual, expected, name):
    jax.tree.map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=2e-6, err_msg=name),
        actual,
        expected,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_one_at_a_time_and_jit_equals_eager(name):
    fn, arg_names = CASES[name]
    args = [INPUTS[n] for n in arg_names.split()]
    batched = fn(*args)
    for leaf in jax.tree.leaves(batched):
        assert leaf.shape[0] == B
        assert leaf.dtype in (jnp.float32, jnp.bool_), (name, leaf.dtype)
        if leaf.ndim == 1:
            assert leaf.dtype == jnp.float32, name  # Metrics proper are float32 [B].
    jitted_fn = jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})
    _close(jitted_fn(*args), batched, name)
    # One example at a time (jitted: one compilation for B = 1, reused).
    singles = [jitted_fn(*[v[i : i + 1] for v in args]) for i in range(B)]
    _close(jax.tree.map(lambda *v: jnp.concatenate(v), *singles), batched, name)


def test_every_public_metric_is_covered():
    covered = {n.split("_box")[0].split("_mask")[0] for n in CASES}
    covered |= {"random_perturbation_similarity"}
    not_metrics = {
        "Accumulator",
        "accumulate",
        "SIMILARITIES",
        "SUBSTRATES",
        "average_ranks",
        "center_of_mass",
        "perturbation_curve",
    }
    assert set(metrics.__all__) - not_metrics <= covered | {"box_mask"}
