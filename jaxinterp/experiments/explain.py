"""The job behind ``jaxinterp explain``: attributions of a trained model as one PNG grid."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp import attacks, attribution, data, metrics
from jaxinterp.experiments.restore import load_trained

__all__ = [
    "METHODS",
    "attribution_fn",
    "check_methods",
    "compute_attributions",
    "explain",
    "heatmap",
    "plot_grid",
]


def _score_based(method: Callable) -> Callable:
    def run(apply_fn, params, x, target, key):
        return method(attribution.class_score(apply_fn, params, target, "logit"), x, key=key)

    return run


def _ig(score_fn, x, *, key):
    return attribution.integrated_gradients(score_fn, x, num_steps=32)


def _boundary(kind: str) -> Callable:
    search = attacks.boundary_search()

    def run(apply_fn, params, x, target, key):
        found = search(apply_fn, params, x, target, key=key)
        score_fn = attribution.class_score(apply_fn, params, target, "logit")
        if kind == "bsm":
            return attribution.bsm(score_fn, found.point)
        return attribution.big(score_fn, x, found.point, num_steps=32)

    return run


def _relex(apply_fn, params, x, target, key):
    return attribution.relex()(apply_fn, params, x, target, key=key)


def _perturbation(**kwargs) -> Callable:
    """``|δ|`` of a (regularized) adversarial ``δ``, shaped like ``x``."""
    explain = attribution.regularized_adversarial(epsilon=0.1, num_steps=20, **kwargs)

    def run(apply_fn, params, x, target, key):
        return explain(apply_fn, params, x, target, key=key)

    return run


# name -> fn(apply_fn, params, x [B, ...], target [B], key) -> attribution shaped like x.
METHODS: dict[str, Callable] = {
    "gradient": _score_based(lambda s, x, key: attribution.gradient(s, x)),
    "gradient_x_input": _score_based(lambda s, x, key: attribution.gradient_x_input(s, x)),
    "ig": _score_based(_ig),
    "smoothgrad": _score_based(attribution.smooth(attribution.gradient, num_samples=25)),
    "vargrad": _score_based(
        attribution.smooth(attribution.gradient, num_samples=25, kind="vargrad")
    ),
    "bsm": _boundary("bsm"),
    "big": _boundary("big"),
    "relex": _relex,
    # Shoshan & Ratner: smoothed, L1/TV-penalised PGD; the plain PGD perturbation as control.
    "regadv": _perturbation(l1=0.01, tv=0.01),
    "pgd_perturbation": _perturbation(smoothing_sigma=None),
}


def check_methods(methods: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the methods not in :data:`METHODS`."""
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}"
        )


@functools.lru_cache(maxsize=64)
def attribution_fn(apply_fn: Callable, method: str) -> Callable:
    """``jit(fn)(params, x, target, key) -> attribution`` of a method; cached per ``apply_fn``
    so that models of one architecture share the compiled code."""
    return jax.jit(functools.partial(METHODS[method], apply_fn))


def heatmap(a: np.ndarray) -> np.ndarray:
    """``[B, H, W, C] -> [B, H, W]``: ``Σ_c |a|``, scaled to [0, 1] per example
    (:func:`jaxinterp.metrics.heatmap`, as a NumPy array)."""
    return np.asarray(metrics.heatmap(a))


def compute_attributions(
    apply_fn, params, x: np.ndarray, target: np.ndarray, methods: Sequence[str], *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Runs each named method (jitted) on ``x``; returns ``name -> [B, ...]``."""
    check_methods(methods)
    key = jax.random.PRNGKey(seed)
    out = {}
    for i, name in enumerate(methods):
        fn = attribution_fn(apply_fn, name)
        out[name] = np.asarray(
            fn(params, jnp.asarray(x), jnp.asarray(target), jax.random.fold_in(key, i))
        )
    return out


def plot_grid(x: np.ndarray, labels, preds, maps: dict[str, np.ndarray], out: str) -> None:
    """Writes a PNG: one row per example (the input, then each ``[B, H, W]`` map in [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(x), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 0.8, 1.6 * rows), squeeze=False)
    image = None
    for r in range(rows):
        img = x[r] if x.shape[-1] == 3 else x[r, ..., 0]
        axes[r, 0].imshow(img, cmap=None if x.shape[-1] == 3 else "gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(f"y={labels[r]} ŷ={preds[r]}", fontsize=8)
        for c, (name, h) in enumerate(maps.items(), start=1):
            image = axes[r, c].imshow(h[r], cmap="inferno", vmin=0, vmax=1)
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
        axes[0, 0].set_title("input", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, fraction=0.02, pad=0.02, label="Σ_c |attribution| / max")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def explain(
    workdir: str,
    methods: Sequence[str],
    out: str,
    *,
    num_examples: int = 8,
    split: str = "test",
    seed: int = 0,
) -> dict[str, float]:
    """Explains the predicted class of the first ``num_examples`` of ``split``; writes ``out``.

    Returns:
      seconds spent per method (compile included).
    """
    if not out.endswith(".png"):
        raise ValueError(f"--out must be a .png file, got {out!r}")
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    check_methods(methods)
    trained = load_trained(workdir)
    split_data = data.load_split(
        trained.config.dataset, split, data_dir=trained.config.data_dir or None
    )
    x = np.asarray(split_data.images[:num_examples])
    labels = np.asarray(split_data.labels[:num_examples])
    apply_fn = trained.model.apply_fn
    preds = np.asarray(jnp.argmax(apply_fn(trained.params, x), -1)).astype(np.int32)
    seconds, maps = {}, {}
    for name in methods:
        t0 = time.perf_counter()
        attr = compute_attributions(apply_fn, trained.params, x, preds, [name], seed=seed)[name]
        maps[name] = heatmap(attr)
        seconds[name] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    plot_grid(x, labels, preds, maps, out)
    return seconds
