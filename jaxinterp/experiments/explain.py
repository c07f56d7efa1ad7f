"""The job behind ``jaxinterp explain``: attributions of a trained model as one PNG grid.

Methods are the explainers of :data:`jaxinterp.attribution.EXPLAINERS`, by name.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp import attribution, data, metrics
from jaxinterp.core import checks
from jaxinterp.experiments.jitting import jit_few_runs
from jaxinterp.experiments.restore import load_trained

__all__ = [
    "MODES",
    "attribution_fn",
    "check_methods",
    "compute_attributions",
    "explain",
    "heatmap",
    "plot_grid",
    "signed_heatmap",
]

MODES: tuple[str, ...] = ("abs", "signed", "overlay")
"""How ``explain`` draws a map: ``"abs"``, ``Σ_c |a| / max`` on a sequential scale;
``"signed"``, ``Σ_c a / max |Σ_c a|`` on a diverging scale centred at 0 (red positive, blue
negative); ``"overlay"``, the ``"abs"`` map over the grey input, opaque where it is high."""


def check_methods(methods: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the methods not in :data:`jaxinterp.attribution.EXPLAINERS`."""
    attribution.EXPLAINERS.check(methods)


def attribution_fn(
    apply_fn: Callable, method: str, layer_fn: Callable | None = None, /, **overrides: Any
) -> Callable:
    """``jit(fn)(params, x, target, key) -> attribution`` of the registered explainer
    ``method`` (its registry defaults, with ``overrides`` in their place; ``layer_fn``, the
    model's :attr:`~jaxinterp.models.Model.layer_fn`, for the methods that look inside it
    such as Grad-CAM); cached per ``apply_fn`` and hyperparameters, so that models of one
    architecture, and every job that asks for the same method, share the compiled code."""
    return _attribution_fn(apply_fn, method, layer_fn, tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=64)
def _attribution_fn(
    apply_fn: Callable, method: str, layer_fn: Callable | None, overrides: tuple
) -> Callable:
    context = {"layer_fn": layer_fn}
    explain = attribution.EXPLAINERS.build(method, context=context, **dict(overrides))

    def run(params: Any, x: jax.Array, target: jax.Array, key: jax.Array) -> jax.Array:
        return explain(apply_fn, params, x, target, key=key)

    return jit_few_runs(run)


def heatmap(a: np.ndarray) -> np.ndarray:
    """``[B, H, W, C] -> [B, H, W]``: ``Σ_c |a|``, scaled to [0, 1] per example
    (:func:`jaxinterp.metrics.heatmap`, as a NumPy array)."""
    return np.asarray(metrics.heatmap(a))


def signed_heatmap(a: np.ndarray) -> np.ndarray:
    """``[B, H, W, C] -> [B, H, W]``: ``Σ_c a`` divided by its largest magnitude per example,
    so in ``[-1, 1]`` with the sign kept (an all-zero map stays 0)."""
    s = np.asarray(a, np.float64).sum(axis=-1)
    peak = np.abs(s).reshape(len(s), -1).max(axis=1)
    return (s / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)


def compute_attributions(
    apply_fn: Callable[..., jax.Array],
    params: Any,
    x: np.ndarray,
    target: np.ndarray,
    methods: Sequence[str],
    *,
    seed: int = 0,
    layer_fn: Callable | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Runs each named method (jitted) on ``x``; returns ``name -> [B, ...]`` (``layer_fn``:
    see :func:`attribution_fn`; ``overrides``: ``name -> hyperparameters`` in place of that
    method's registry defaults)."""
    check_methods(methods)
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(methods))
    if unknown:
        raise ValueError(f"overrides for methods not asked for: {unknown} (methods: {methods})")
    key = jax.random.PRNGKey(seed)
    out = {}
    for i, name in enumerate(methods):
        fn = attribution_fn(apply_fn, name, layer_fn, **overrides.get(name, {}))
        out[name] = np.asarray(
            fn(params, jnp.asarray(x), jnp.asarray(target), jax.random.fold_in(key, i))
        )
    return out


def plot_grid(
    x: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    maps: dict[str, np.ndarray],
    out: str,
    *,
    mode: str = "abs",
) -> None:
    """Writes a PNG: one row per example (the input, then each ``[B, H, W]`` map), drawn as
    :data:`MODES` says (``maps`` in [0, 1], or [-1, 1] for ``"signed"``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks.one_of("mode", mode, MODES)
    cmap, vmin, label = {
        "abs": ("inferno", 0.0, "Σ_c |attribution| / max"),
        "signed": ("RdBu_r", -1.0, "Σ_c attribution / max |·|"),
        "overlay": ("inferno", 0.0, "Σ_c |attribution| / max, over the input"),
    }[mode]
    rows, cols = len(x), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 0.8, 1.6 * rows), squeeze=False)
    image = None
    for r in range(rows):
        img = x[r] if x.shape[-1] == 3 else x[r, ..., 0]
        axes[r, 0].imshow(img, cmap=None if x.shape[-1] == 3 else "gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(f"y={labels[r]} ŷ={preds[r]}", fontsize=8)
        grey = x[r].mean(axis=-1)
        for c, (name, h) in enumerate(maps.items(), start=1):
            if mode == "overlay":
                axes[r, c].imshow(grey, cmap="gray", vmin=0, vmax=1)
                alpha = np.clip(h[r], 0.0, 1.0)  # opaque where the map is high
                image = axes[r, c].imshow(h[r], cmap=cmap, vmin=0, vmax=1, alpha=alpha)
            else:
                image = axes[r, c].imshow(h[r], cmap=cmap, vmin=vmin, vmax=1)
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
        axes[0, 0].set_title("input", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:  # at least one method was plotted
        fig.colorbar(image, ax=axes, fraction=0.02, pad=0.02, label=label)
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
    mode: str = "abs",
    log: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Explains the predicted class of the first ``num_examples`` of ``split``; writes ``out``.

    Args:
      mode: How the maps are drawn (:data:`MODES`).
      log: Called with one line per method as it finishes (e.g. ``print`` to stderr).

    Returns:
      seconds spent per method (compile included).
    """
    checks.one_of("mode", mode, MODES)
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
    preds = np.asarray(jnp.argmax(apply_fn(trained.params, jnp.asarray(x)), -1)).astype(np.int32)
    seconds, maps = {}, {}
    for name in methods:
        t0 = time.perf_counter()
        attr = compute_attributions(
            apply_fn, trained.params, x, preds, [name], seed=seed, layer_fn=trained.model.layer_fn
        )[name]
        maps[name] = signed_heatmap(attr) if mode == "signed" else heatmap(attr)
        seconds[name] = time.perf_counter() - t0
        if log is not None:
            log(f"explain: {name} done in {seconds[name]:.1f}s ({len(maps)}/{len(methods)})")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    plot_grid(x, labels, preds, maps, out, mode=mode)
    return seconds
