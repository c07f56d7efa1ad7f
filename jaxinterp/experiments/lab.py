"""What the claims of ``jaxinterp reproduce`` measure on: models, data, and shared draws.

:class:`Lab` holds the trained models, the evaluation data and the settings, and computes
the inputs several methods must share (METHODS §5.1): one adversarial example per example
and model (:meth:`Lab.adversarial`), one key per purpose and seed (:meth:`Lab.key`), batched
jitted explanations (:meth:`Lab.explain`). Claims are judged by
:mod:`jaxinterp.experiments.verdict`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxinterp import attacks, data, metrics
from jaxinterp.experiments import metric_suite
from jaxinterp.experiments.evaluate import per_example
from jaxinterp.experiments.explain import attribution_fn
from jaxinterp.experiments.jitting import FEW_RUNS_SUB_BATCH_FRACTIONS, jit_few_runs

__all__ = ["Lab", "Model", "append_rows", "collect", "logits_fn"]

Table = dict[str, dict[str, list[float]]]


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
    layer_fn: Callable | None = None


@functools.lru_cache(maxsize=64)
def logits_fn(apply_fn: Callable) -> Callable:
    """``apply_fn`` jitted, once per model function: run eagerly, a forward pass compiles
    every operation of the model as a program of its own (about 40 on the CNN)."""
    return jit_few_runs(apply_fn)


@functools.lru_cache(maxsize=16)
def _pgd_fn(apply_fn: Callable, epsilon: float, steps: int) -> Callable:
    attack = attacks.pgd(epsilon=epsilon, num_steps=steps)
    return jit_few_runs(lambda p, x, y, k: attack(apply_fn, p, x, y, key=k))


@functools.lru_cache(maxsize=16)
def _robust_fn(apply_fn: Callable, epsilon: float, steps: int) -> Callable:
    suite = attacks.autoattack_like(
        epsilon,
        num_steps=steps,
        num_target_classes=3,
        sub_batch_fractions=FEW_RUNS_SUB_BATCH_FRACTIONS,
    )

    def fn(params: Any, x: jax.Array, y: jax.Array, key: jax.Array) -> jax.Array:
        return metrics.robust_accuracy(apply_fn, params, x, y, suite, key=key)["robust"]

    return jit_few_runs(fn)


SLOW_SECONDS = 20.0
"""A shared computation of the lab running longer than this is logged as it ends."""


@dataclasses.dataclass
class Lab:
    """The models, the evaluation data and settings of the study, and its shared draws."""

    models: dict[tuple[str, int], Model]
    test: data.Split
    settings: metric_suite.Settings
    seeds: Sequence[int]
    num_examples: int
    batch_size: int
    localisation: dict[int, Model] = dataclasses.field(default_factory=dict)
    localisation_test: data.Split | None = None
    localisation_num_examples: int = 0
    gates: dict[str, float] = dataclasses.field(default_factory=dict)
    protocol: dict[str, Any] = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] = print
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def xy(self, split: data.Split | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """The first examples of ``split`` (default: the test split): ``x, y, extras``."""
        n = self.num_examples
        if split is not None and split is not self.test:
            n = self.localisation_num_examples or n
        split = split or self.test
        n = min(n, len(split.images))
        boxes = ("bbox", "distractor_bbox")
        extras = {k: np.asarray(v[:n]) for k, v in split.extras.items() if k in boxes}
        return np.asarray(split.images[:n]), np.asarray(split.labels[:n]), extras

    def key(self, m: Model, purpose: str) -> jax.Array:
        """One key per model seed and purpose, the same for every method compared."""
        return jax.random.fold_in(jax.random.PRNGKey(m.seed), sum(map(ord, purpose)))

    def batched(self, fn: Callable[..., Any], *arrays: np.ndarray) -> Any:
        """``fn(*batch)`` over ``lab.batch_size`` slices of ``arrays``, concatenated."""
        n = len(arrays[0])
        outs = [
            jax.device_get(fn(*(a[i : i + self.batch_size] for a in arrays)))
            for i in range(0, n, self.batch_size)
        ]
        return jax.tree.map(lambda *v: np.concatenate(v), *outs)

    def logits(self, m: Model, x: np.ndarray) -> np.ndarray:
        """``m``'s logits of ``x``, batched (one jitted forward pass per model function)."""
        return self.batched(lambda b: logits_fn(m.apply_fn)(m.params, b), x)

    def predictions(self, m: Model, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(m, x), -1).astype(np.int32)

    def explain(
        self, m: Model, method: str, x: np.ndarray, target: np.ndarray, key: jax.Array, **kw: Any
    ) -> np.ndarray:
        """The registered explainer ``method`` (with ``kw`` overrides), batched; the key of
        batch ``i`` is ``fold_in(key, i)`` whatever the method, so methods share draws. A call
        that takes longer than ``SLOW_SECONDS`` is logged with its time as it ends."""
        fn = attribution_fn(m.apply_fn, method, m.layer_fn, **kw)
        index = np.arange(len(x))
        t0 = time.perf_counter()
        out = self.batched(
            lambda xb, yb, ib: fn(m.params, xb, yb, jax.random.fold_in(key, int(ib[0]))),
            x,
            target,
            index,
        )
        seconds = time.perf_counter() - t0
        if seconds > SLOW_SECONDS:
            self.log(f"    {method} of {len(x)} examples: {seconds:.0f}s")
        return out

    def adversarial(self, m: Model, epsilon: float | None = None) -> dict[str, np.ndarray]:
        """L∞ PGD of the test examples (``settings.attack_steps``), cached per model and ε:
        ``{"x_adv", "pred", "adv_pred", "flipped"}`` shared by every method compared."""
        eps = float(self.settings.epsilon if epsilon is None else epsilon)
        cache_key = ("adv", m.name, m.seed, eps)
        if cache_key not in self._cache:
            x, _, _ = self.xy()
            pred = self.predictions(m, x)
            attack = _pgd_fn(m.apply_fn, eps, int(self.settings.attack_steps))
            key = self.key(m, f"pgd{eps}")
            index = np.arange(len(x))
            x_adv = self.batched(
                lambda xb, yb, ib: attack(m.params, xb, yb, jax.random.fold_in(key, int(ib[0]))),
                x,
                pred,
                index,
            )
            adv_pred = self.predictions(m, x_adv)
            self._cache[cache_key] = {
                "x_adv": x_adv,
                "pred": pred,
                "adv_pred": adv_pred,
                "flipped": adv_pred != pred,
            }
        return self._cache[cache_key]

    def robust_accuracy(self, m: Model) -> float:
        """Robust accuracy against the true labels, the per-example worst case over the
        shared PGD and APGD-CE / APGD-T (3 targets) at ``settings.epsilon``, as papers
        report it (:func:`jaxinterp.metrics.robust_accuracy`)."""
        cache_key = ("robust", m.name, m.seed)
        if cache_key not in self._cache:
            x, y, _ = self.xy()
            adv = self.adversarial(m)
            pgd = (adv["adv_pred"] == y) & (adv["pred"] == y)
            fn = _robust_fn(
                m.apply_fn, float(self.settings.epsilon), int(self.settings.attack_steps)
            )
            key = self.key(m, "apgd")
            apgd = self.batched(lambda xb, yb: fn(m.params, xb, yb, key), x, y)
            self._cache[cache_key] = float(np.mean(pgd & (apgd > 0)))
        return self._cache[cache_key]

    def values(
        self,
        m: Model,
        methods: Sequence[str],
        metric_names: Sequence[str],
        split: data.Split | None = None,
    ) -> dict:
        """Per-example values ``{method: {"metric/value": [N]}}`` of the metric suite."""
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
            layer_fn=m.layer_fn,
        )
        return out


def append_rows(table: Table, rows: Mapping[str, Mapping[str, float]]) -> None:
    """Appends one seed's ``{row: {column: value}}`` to ``table``'s per-seed lists."""
    for row, cols in rows.items():
        for col, v in cols.items():
            table.setdefault(row, {}).setdefault(col, []).append(float(v))


def collect(lab: Lab, names: Sequence[str], measure: Callable[[Model], dict[str, float]]) -> Table:
    """``{model name: {column: [value per seed]}}``."""
    out: Table = {}
    for name in names:
        for seed in lab.seeds:
            lab.log(f"  {name} (seed {seed})")
            append_rows(out, {name: measure(lab.models[(name, seed)])})
    return out


def mean_where(values: np.ndarray, ok: np.ndarray) -> float:
    """Mean of ``values[ok]``; NaN when no example qualifies."""
    values, ok = np.asarray(values), np.asarray(ok, bool)
    return float(np.mean(values[ok])) if np.any(ok) else float("nan")
