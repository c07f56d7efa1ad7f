"""The job behind ``jaxinterp evaluate``: explanation metrics of a trained model.

For each attribution method and metric, per-example values are computed batch by batch
(jitted), merged with :class:`jaxinterp.metrics.Accumulator` and reported as mean, std and
count per method.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp import attribution, data, metrics, models, training
from jaxinterp.core.protocols import ApplyFn
from jaxinterp.experiments import metric_suite
from jaxinterp.experiments.explain import attribution_fn, check_methods
from jaxinterp.experiments.jitting import jit_few_runs
from jaxinterp.experiments.restore import load_trained

__all__ = [
    "check_metrics",
    "evaluate",
    "format_table",
    "per_example",
    "summarize",
]


def check_metrics(names: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the unknown metrics."""
    metric_suite.METRICS.check(names)


@functools.lru_cache(maxsize=256)
def _metric_fn(
    apply_fn: Callable[..., jax.Array],
    method: str,
    metric: str,
    settings: metric_suite.Settings,
    surrogate: Callable[..., jax.Array] | None,
    layer_fn: Callable[..., Any] | None = None,
) -> Callable[..., dict[str, jax.Array]]:
    """``jit(run)(params, x, target, attr, key, method_key, extras)``, cached so that models
    sharing an ``apply_fn`` (one architecture) share the compiled code."""
    explain = attribution.EXPLAINERS.build(method, context={"layer_fn": layer_fn})

    def run(
        params: Any,
        x: jax.Array,
        target: jax.Array,
        attr: jax.Array,
        key: jax.Array,
        method_key: jax.Array,
        extras: dict[str, jax.Array],
    ) -> dict[str, jax.Array]:
        def explain_fn(
            apply_fn: ApplyFn, params: Any, x: jax.Array, target: jax.Array
        ) -> jax.Array:
            return explain(apply_fn, params, x, target, key=method_key)

        case = metric_suite.Case(
            apply_fn, params, x, target, attr, explain_fn, key, settings, extras, surrogate
        )
        return metric_suite.METRICS[metric](case)

    return jit_few_runs(run)


def per_example(
    apply_fn: Callable[..., jax.Array],
    params: Any,
    x: np.ndarray,
    target: np.ndarray,
    methods: Sequence[str],
    metric_names: Sequence[str],
    *,
    extras: dict[str, np.ndarray] | None = None,
    settings: metric_suite.Settings | None = None,
    batch_size: int = 64,
    seed: int = 0,
    surrogate_apply_fn: Callable[..., jax.Array] | None = None,
    show_progress: bool = True,
    layer_fn: Callable[..., Any] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Per-example metric values of each method's attributions of ``target`` at ``x``.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits``.
      x: ``[N, H, W, C]`` inputs; ``target``: ``[N]`` the classes explained.
      methods: Names in :data:`jaxinterp.attribution.EXPLAINERS`.
      metric_names: Names in :data:`jaxinterp.experiments.metric_suite.METRICS`.
      extras: ``[N, ...]`` per-example features (``bbox`` for the localisation metrics).
      layer_fn: The model's :attr:`~jaxinterp.models.Model.layer_fn`, for the explainers
        that look inside it (Grad-CAM).

    Returns:
      ``({method: {"metric/value": [N]}}, skipped)``; ``skipped`` lists ``"method/metric"``
      pairs not computed (attribution attacks need an explainer tagged ``differentiable``).
    """
    check_methods(methods)
    check_metrics(metric_names)
    extras = dict(extras or {})
    if "bbox" not in extras:
        boxed = [m for m in metric_names if metric_suite.needs(m) == "boxes"]
        if boxed:
            raise ValueError(
                f"{', '.join(boxed)} need a dataset with boxes (digits_canvas, mnist_canvas)"
            )
    settings = settings or metric_suite.Settings()
    key = jax.random.PRNGKey(seed)
    starts = range(0, len(x), batch_size)
    out: dict[str, dict[str, np.ndarray]] = {}
    skipped = []
    bar = training.progress_bar(
        len(methods) * len(starts), 0, enabled=show_progress, desc="evaluate", unit="batch"
    )
    for i, method in enumerate(methods):
        mkey = jax.random.fold_in(key, i)
        attr_fn = attribution_fn(apply_fn, method, layer_fn)
        todo = []
        for metric in metric_names:
            differentiable = attribution.EXPLAINERS.names("differentiable")
            if metric_suite.needs(metric) == "differentiable" and method not in differentiable:
                skipped.append(f"{method}/{metric}")
            else:
                todo.append(metric)
        fns = {
            m: _metric_fn(apply_fn, method, m, settings, surrogate_apply_fn, layer_fn) for m in todo
        }
        values: dict[str, list[np.ndarray]] = {}
        for b, start in enumerate(starts):
            sl = slice(start, start + batch_size)
            xb, tb = jnp.asarray(x[sl]), jnp.asarray(target[sl])
            eb = {k: jnp.asarray(v[sl]) for k, v in extras.items()}
            if all(m in metric_suite.NO_ATTRIBUTION for m in fns):
                attr = jnp.zeros_like(xb)  # Not used: skip a costly method (e.g. RelEx).
            else:
                attr = attr_fn(params, xb, tb, mkey)
            for j, (metric, fn) in enumerate(fns.items()):
                bkey = jax.random.fold_in(jax.random.fold_in(mkey, 1 + j), b)
                for name, v in fn(params, xb, tb, attr, bkey, mkey, eb).items():
                    values.setdefault(f"{metric}/{name}", []).append(np.asarray(v))
            bar.update(1)
        out[method] = {k: np.concatenate(v) for k, v in values.items()}
    bar.close()
    return out, skipped


def summarize(values: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict]]:
    """``{method: {"metric/value": {"mean", "std", "count"}}}`` via the metrics accumulator."""
    result = {}
    for method, per_value in values.items():
        accs = metrics.accumulate({}, {k: jnp.asarray(v) for k, v in per_value.items()})
        result[method] = {k: acc.compute() for k, acc in accs.items()}
    return result


def format_table(summary: dict[str, dict[str, dict]]) -> str:
    """A Markdown table: one row per metric value, one column per method (mean ± std)."""
    methods = list(summary)
    rows = sorted({k for per in summary.values() for k in per})
    lines = ["| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for row in rows:
        cells = [
            f"{summary[m][row]['mean']:.3f} ± {summary[m][row]['std']:.3f}"
            if row in summary[m]
            else "n/a"
            for m in methods
        ]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate(
    workdir: str,
    methods: Sequence[str],
    metric_names: Sequence[str] | None,
    out: str,
    *,
    num_examples: int = 128,
    batch_size: int = 64,
    split: str = "test",
    seed: int = 0,
    settings: metric_suite.Settings | None = None,
) -> dict[str, Any]:
    """Evaluates the model of ``workdir`` on the first ``num_examples`` of ``split``.

    ``metric_names=None`` takes every metric that applies (the localisation metrics only on a
    dataset with boxes). Writes ``out`` (JSON) and returns what it wrote.
    """
    if not out.endswith(".json"):
        raise ValueError(f"--out must be a .json file, got {out!r}")
    if num_examples < 1 or batch_size < 1:
        raise ValueError(
            f"num_examples and batch_size must be >= 1, got {num_examples}, {batch_size}"
        )
    check_methods(methods)
    trained = load_trained(workdir)
    cfg = trained.config
    split_data = data.load_split(cfg.dataset, split, data_dir=cfg.data_dir or None)
    n = min(num_examples, len(split_data.images))
    x, labels = np.asarray(split_data.images[:n]), np.asarray(split_data.labels[:n])
    extras = {k: np.asarray(v[:n]) for k, v in split_data.extras.items() if k == "bbox"}
    extras["labels"] = labels.astype(np.int32)  # true labels, for robust accuracy
    if metric_names is None:
        metric_names = [
            m for m in metric_suite.METRICS if metric_suite.needs(m) != "boxes" or "bbox" in extras
        ]
    check_metrics(metric_names)
    apply_fn = trained.model.apply_fn
    preds = np.asarray(jnp.argmax(apply_fn(trained.params, jnp.asarray(x)), -1)).astype(np.int32)
    surrogate = None
    if cfg.activation == "relu":
        kwargs = dict(cfg.model_kwargs)
        surrogate = models.get_model(
            cfg.model,
            num_classes=split_data.num_classes,
            activation="softplus",
            beta=30.0,
            **kwargs,
        ).apply_fn
    values, skipped = per_example(
        apply_fn,
        trained.params,
        x,
        preds,
        methods,
        metric_names,
        extras=extras,
        settings=settings,
        batch_size=batch_size,
        seed=seed,
        surrogate_apply_fn=surrogate,
        layer_fn=trained.model.layer_fn,
    )
    result = {
        "workdir": os.path.abspath(workdir),
        "step": trained.step,
        "dataset": cfg.dataset,
        "split": split,
        "num_examples": n,
        "accuracy": float(np.mean(preds == labels)),
        "settings": dataclasses.asdict(settings or metric_suite.Settings()),
        "results": summarize(values),
        "skipped": skipped,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    training.write_json_atomic(out, result)
    return result
