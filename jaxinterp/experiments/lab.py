"""What the claims of ``jaxinterp reproduce`` measure on, and how a claim is judged.

:class:`Lab` holds the trained models, the evaluation data and settings; the helpers build a
claim's table (cells ``mean ± std`` over seeds) and its checks (strict orderings of means).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp import data, regularizers
from jaxinterp.experiments import metric_suite
from jaxinterp.experiments.evaluate import per_example

__all__ = ["Lab", "Model", "activation_sensitivity", "collect", "means", "order", "status", "table"]


@dataclasses.dataclass(frozen=True)
class Model:
    """A trained model of the study."""

    name: str
    seed: int
    apply_fn: Callable
    features_fn: Callable
    params: Any
    accuracy: float
    config: Any


@dataclasses.dataclass
class Lab:
    """What the claims measure on: the models, the evaluation data and settings."""

    models: dict[tuple[str, int], Model]
    test: data.Split
    settings: metric_suite.Settings
    seeds: Sequence[int]
    num_examples: int
    batch_size: int
    localisation: dict[int, Model] = dataclasses.field(default_factory=dict)
    localisation_test: data.Split | None = None
    localisation_num_examples: int = 0
    boundary_searches: int = 3
    cw_binary_search_steps: int = 9
    log: Callable[[str], None] = print

    def xy(self, split: data.Split | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        n = self.num_examples
        if split is not None and split is not self.test:
            n = self.localisation_num_examples or n
        split = split or self.test
        n = min(n, len(split.images))
        extras = {k: np.asarray(v[:n]) for k, v in split.extras.items() if k == "bbox"}
        return np.asarray(split.images[:n]), np.asarray(split.labels[:n]), extras

    def predictions(self, m: Model, x: np.ndarray) -> np.ndarray:
        return np.asarray(jnp.argmax(m.apply_fn(m.params, x), -1)).astype(np.int32)

    def values(
        self,
        m: Model,
        methods: Sequence[str],
        metric_names: Sequence[str],
        split: data.Split | None = None,
    ) -> dict:
        """Per-example values ``{method: {"metric/value": [N]}}`` of model ``m``."""
        x, _, extras = self.xy(split)
        out, _ = per_example(
            m.apply_fn,
            m.params,
            x,
            self.predictions(m, x),
            methods,
            metric_names,
            extras=extras,
            settings=self.settings,
            batch_size=self.batch_size,
            seed=m.seed,
            show_progress=False,
        )
        return out


def _cell(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.pstdev(values):.2g}"


def order(label: str, named: list[tuple[str, float]], higher_first: bool) -> dict:
    """A check that ``named`` values are strictly ordered as listed (fails on a NaN)."""
    vals = [v for _, v in named]
    pairs = zip(vals, vals[1:], strict=False)
    holds = all((a > b) if higher_first else (a < b) for a, b in pairs)
    sign = " > " if higher_first else " < "
    shown = sign.join(f"{n} ({v:.4g})" for n, v in named)
    check: dict[str, Any] = {"check": f"{label}: {shown}", "holds": bool(holds)}
    if any(np.isnan(v) for v in vals):
        check["check"] += " (not measured: no example qualified)"
        check["measured"] = False
    return check


def status(checks: list[dict]) -> str:
    """``holds`` / ``partly holds`` / ``does not hold``, or ``not measured``."""
    measured = [c for c in checks if c.get("measured", True)]
    if not measured:
        return "not measured"
    n = sum(c["holds"] for c in measured)
    verdict = "holds" if n == len(measured) else ("does not hold" if n == 0 else "partly holds")
    return verdict if len(measured) == len(checks) else f"{verdict} (some checks not measured)"


def table(per_seed: dict[str, dict[str, list[float]]], columns: list[str]) -> list[list[str]]:
    return [[row] + [_cell(vals[c]) for c in columns] for row, vals in per_seed.items()]


def means(per_seed: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {r: {c: float(np.mean(v)) for c, v in cols.items()} for r, cols in per_seed.items()}


def collect(
    lab: Lab, names: Sequence[str], measure: Callable[[Model], dict[str, float]]
) -> dict[str, dict[str, list[float]]]:
    """``{model name: {column: [value per seed]}}``."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in names:
        for seed in lab.seeds:
            lab.log(f"  {name} (seed {seed})")
            for col, v in measure(lab.models[(name, seed)]).items():
                out.setdefault(name, {}).setdefault(col, []).append(float(v))
    return out


@functools.lru_cache(maxsize=16)
def _sensitivity_fn(apply_fn: Callable, features_fn: Callable) -> Callable:
    penalty = regularizers.activation_sensitivity(features_fn, num_probes=16)
    return jax.jit(lambda p, x, y, k: penalty(apply_fn, p, x, y, key=k)[0])


def activation_sensitivity(lab: Lab, m: Model) -> float:
    """The activation-sensitivity measure (16 jvp probes, all layers), mean over examples."""
    fn = _sensitivity_fn(m.apply_fn, m.features_fn)
    x, y, _ = lab.xy()
    total = 0.0
    for i in range(0, len(x), lab.batch_size):
        xb, yb = x[i : i + lab.batch_size], y[i : i + lab.batch_size]
        total += float(fn(m.params, xb, yb, jax.random.PRNGKey(i))) * len(xb)
    return total / len(x)
