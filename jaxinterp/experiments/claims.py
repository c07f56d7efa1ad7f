"""The five claims of METHODS §5: what each measures, and how it is judged.

A :class:`Claim` is two functions. ``measure(lab)`` runs the models and returns named tables
``{table: {row: {column: [value per seed]}}}``; ``judge(tables, gates)`` is pure and returns
the claim's sanity gates and checks (:mod:`jaxinterp.experiments.verdict`), so every verdict
can be tested on made-up numbers: it must flip when the compared models are swapped and
become "inconclusive" when a gate fails. :func:`run` does both and formats the result.
Claims 1 and 2 live here; 3 to 5 in :mod:`jaxinterp.experiments.claims_attribution`.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp import attacks, attribution, metrics, training
from jaxinterp.core import checks
from jaxinterp.experiments import verdict
from jaxinterp.experiments.jitting import jit_few_runs
from jaxinterp.experiments.lab import Lab, Model, Table, collect
from jaxinterp.experiments.setup import train_step_from_config
from jaxinterp.experiments.verdict import compare, gate
from jaxinterp.training import parallel

__all__ = ["DEFAULT_GATES", "Claim", "claim_1", "claim_2", "map_shape", "run"]

Tables = dict[str, Table]
Judged = tuple[list[dict[str, Any]], list[dict[str, Any]]]

DEFAULT_GATES: dict[str, float] = {
    "accuracy": 0.8,  # every compared model
    "accuracy_gap": 0.05,  # "at similar accuracy" (claim 2)
    "robust_gap": 0.2,  # robust accuracy of PGD-AT / TRADES minus standard's
    "attack_success": 0.5,  # PGD flips the standard model's prediction
    "min_flipped": 100,  # flipped examples claim 4 averages over
    "topk_moved": 0.05,  # 1 − top-k intersection of the standard model under the attack
    "manipulation": 0.05,  # frame correlation gained by the standard model's manipulated map
    "chance_tolerance": 0.05,  # input-only maps within 0.5 ± this on the distractor game
    "boundary_found": 0.5,  # share of examples with a boundary point
    "localisation_accuracy": 0.7,  # the model of the distractor canvas
}


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim: ``measure(lab) -> tables``, ``judge(tables, gates) -> (gates, checks)``."""

    id: int
    title: str
    statement: str
    measure: Callable[[Lab], Tables]
    judge: Callable[[Tables, Mapping[str, float]], Judged]
    localisation: bool = False
    """Whether it measures on the distractor canvas (its models are then trained)."""


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def format_table(title: str, table: Table) -> dict[str, Any]:
    """``{"title", "columns", "rows"}`` with cells ``mean ± std`` over seeds (``-``: none)."""
    columns: list[str] = []
    for cols in table.values():
        columns += [c for c in cols if c not in columns]
    rows = [[r] + [_cell(v[c]) if c in v else "-" for c in columns] for r, v in table.items()]
    return {"title": title, "columns": ["row"] + columns, "rows": rows}


def run(claim: Claim, lab: Lab) -> dict[str, Any]:
    """Measures and judges ``claim``: ``{"id", "title", "statement", "tables", "gates",
    "checks", "status"}`` (tables formatted; per-seed values under ``"values"``)."""
    tables = claim.measure(lab)
    gates, checks = claim.judge(tables, {**DEFAULT_GATES, **lab.gates})
    return {
        "id": claim.id,
        "title": claim.title,
        "statement": claim.statement,
        "tables": [format_table(name, t) for name, t in tables.items()],
        "values": tables,
        "gates": gates,
        "checks": checks,
        "status": verdict.status(checks),
    }


def _mean(t: Table, row: str, col: str) -> float:
    return statistics.fmean(t[row][col])


def _accuracy_gates(t: Table, rows: list[str], g: Mapping[str, float]) -> list[dict]:
    return [gate(f"accuracy of {r}", _mean(t, r, "accuracy"), g["accuracy"]) for r in rows]


# --- Claim 1: activation sensitivity (Moshe et al.) ---------------------------------------

_SENS = "activation sensitivity (normalised, finite differences)"
_C1 = [(_SENS, False), ("RPS pearson", True), ("max-sensitivity", False)]
_TOPK = "top-k intersection (attack)"


@functools.lru_cache(maxsize=16)
def _fd_sensitivity_fn(features_fn: Callable, probes: int, sigma: float) -> Callable:
    """``jit(fn)(params, x, key) -> [B]``: ``mean_l E_u ‖h_l(x + σu) − h_l(x)‖² /
    (σ² ‖h_l(x)‖²)`` over the model's layers, ``u ~ N(0, I)``; a finite-difference estimator
    (the act_sens model is trained with the jvp one) that does not grow with the logit scale."""

    def fn(params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
        h0 = features_fn(params, x)
        total = jnp.zeros(x.shape[0])
        for i in range(probes):
            u = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
            h1 = features_fn(params, x + sigma * u)
            for name, a in h0.items():
                d = jnp.sum(jnp.square(h1[name] - a).reshape(x.shape[0], -1), axis=1)
                ref = jnp.sum(jnp.square(a).reshape(x.shape[0], -1), axis=1)
                total += d / (sigma**2 * jnp.maximum(ref, 1e-12))
        return total / (probes * len(h0))

    return jit_few_runs(fn)


def map_shape(grad: jax.Array, x: jax.Array, ink: float = 0.5) -> dict[str, jax.Array]:
    """How a gradient map ``g`` looks next to its input ``x`` (``[B, H, W, C]`` each), ``[B]``:

    * ``alignment``: ``|⟨g, x⟩| / (‖g‖ ‖x‖)``, Etmann et al.'s alignment of the gradient with
      the image, normalised by ``‖x‖`` (robust models' gradients look like the input);
    * ``ink share``: the share of ``Σ_c |g|`` on the pixels with ``max_c x > ink``;
    * ``gini``: :func:`jaxinterp.metrics.gini` of ``|g|`` (higher is sparser).

    References:
      Etmann, Lunz, Maass, Schönlieb, "On the connection between adversarial robustness and
      saliency map interpretability", ICML 2019.
    """
    h = jnp.sum(jnp.abs(grad), axis=-1)
    on_ink = jnp.max(x, axis=-1) > ink
    total = jnp.sum(h, axis=(1, 2))
    share = jnp.sum(jnp.where(on_ink, h, 0.0), axis=(1, 2)) / jnp.where(total > 0, total, 1.0)
    return {
        "alignment": jnp.abs(metrics.cosine_similarity(grad, x)),
        "ink share": share,
        "gini": metrics.gini(grad),
    }


def _gradient_map(lab: Lab, m: Model, x: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return lab.explain(m, "gradient", x, pred, lab.key(m, "explain"))


def _map_shape_columns(grad: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """The :func:`map_shape` means of gradient maps ``grad`` of ``x``, as reported columns."""
    shape = map_shape(jnp.asarray(grad), jnp.asarray(x))
    return {f"gradient–input {k}" if k == "alignment" else f"gradient {k}": float(np.mean(v))
            for k, v in shape.items()}  # fmt: skip


def _measure_1(lab: Lab) -> Tables:
    names = ["standard", "pgd_at", "trades", "act_sens"]
    x, _, _ = lab.xy()

    def measure(m: Model) -> dict[str, float]:
        v = lab.values(m, ["gradient"], ["rps", "max_sensitivity", "topk_attack"])["gradient"]
        fd = _fd_sensitivity_fn(m.features_fn, 4, 1e-2)
        key = lab.key(m, "sensitivity")
        sens = lab.batched(lambda xb: fd(m.params, xb, key), x)
        return {
            "accuracy": m.accuracy,
            "robust accuracy": lab.robust_accuracy(m),
            _SENS: float(np.mean(sens)),
            "RPS pearson": float(np.mean(v["rps/pearson"])),
            "max-sensitivity": float(np.mean(v["max_sensitivity/value"])),
            _TOPK: float(np.mean(v["topk_attack/topk_intersection"])),
            **_map_shape_columns(_gradient_map(lab, m, x, lab.predictions(m, x)), x),
        }

    table = collect(lab, names, measure)
    k_share = lab.settings.topk_fraction  # Two independent random top-k sets share k/D.
    table["chance (independent random maps)"] = {"RPS pearson": [0.0], _TOPK: [k_share]}
    return {"models": table}


def _judge_1(tables: Tables, g: Mapping[str, float]) -> Judged:
    t = tables["models"]
    acc = _accuracy_gates(t, ["standard", "pgd_at", "trades", "act_sens"], g)
    robust = gate(
        "robust-accuracy gap pgd_at − standard",
        _mean(t, "pgd_at", "robust accuracy") - _mean(t, "standard", "robust accuracy"),
        g["robust_gap"],
    )
    moved = gate(
        "top-k attack moves standard's map (1 − intersection)",
        1.0 - _mean(t, "standard", _TOPK),
        g["topk_moved"],
    )
    checks = []
    for col, higher in [*_C1, (_TOPK, True)]:
        extra = [moved] if col == _TOPK else []
        for a, b in (("act_sens", "pgd_at"), ("pgd_at", "standard")):
            checks.append(
                compare(
                    col, (a, t[a][col]), (b, t[b][col]), higher=higher, gates=acc + [robust] + extra
                )
            )
    return acc + [robust, moved], checks


claim_1 = Claim(
    1,
    "Activation sensitivity (Moshe et al.)",
    "Activation sensitivity orders regularised < adversarially trained < standard, measured "
    "with an estimator none was trained with (finite differences, normalised per layer); "
    "gradient-map robustness (RPS, max-sensitivity, top-k intersection under the top-k "
    "attack) in the opposite order.",
    _measure_1,
    _judge_1,
)


# --- Claim 2: local gradient alignment (Joo et al.) ---------------------------------------


def _median_step_seconds(m: Model, x: np.ndarray, y: np.ndarray, repeats: int = 5) -> float:
    """Median time of the train step ``m`` was trained with (its config's optimizer, schedule,
    penalties and batch size, on its mesh), on ``x, y`` repeated to that batch size; compile
    and warm-up excluded. The step comes from :func:`train_step_from_config`, so a model
    trained in this process reuses its compiled code."""
    mesh = parallel.make_data_mesh(m.config.get("num_devices") or None)
    step, tx = train_step_from_config(
        m.config, mesh, apply_fn=m.apply_fn, features_fn=m.features_fn, layer_fn=m.layer_fn
    )
    params = jax.tree.map(jnp.copy, m.params)  # the step donates its state: not m's params
    state = training.replicate(
        training.create_train_state(params, tx, key=jax.random.PRNGKey(0)), mesh
    )
    n = int(m.config.batch_size)
    batch = parallel.shard_batch(
        {"image": np.resize(x, (n, *x.shape[1:])), "label": np.resize(y, n)}, mesh
    )
    state, _ = step(state, batch)  # compiles, unless training did
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, _ = step(state, batch)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@functools.lru_cache(maxsize=16)
def _rps_fn(apply_fn: Callable) -> Callable:
    """``fn(params, x, y, key, radius) -> [B]`` RPS of gradient maps; the radius is traced, so
    one compiled program serves every radius of the protocol."""
    explain = attribution.EXPLAINERS.build("gradient")

    def fn(params: Any, x: jax.Array, y: jax.Array, key: jax.Array, radius: jax.Array) -> jax.Array:
        at = lambda z: explain(apply_fn, params, z, y)  # noqa: E731
        rps = metrics.random_perturbation_similarity(at, x, key=key, epsilon=radius)
        return cast(jax.Array, rps)  # One similarity name: one array.

    return jit_few_runs(fn)


def _rps_columns(lab: Lab, m: Model, x: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    out = {}
    fn, key = _rps_fn(m.apply_fn), lab.key(m, "rps")
    for r in lab.protocol.get("rps_radii", (4 / 255, 8 / 255, 16 / 255)):
        radius = jnp.float32(checks.positive("rps_radii[i]", r))
        v = lab.batched(lambda xb, yb, radius=radius: fn(m.params, xb, yb, key, radius), x, pred)
        out[f"1 − RPS @ {round(r * 255)}/255"] = 1.0 - float(np.mean(v))
    return out


def _measure_2(lab: Lab) -> Tables:
    x, y, _ = lab.xy()
    h, w = x.shape[1:3]
    frame = attacks.frame_target((h, w), width=max(1, h // 8))

    def measure(m: Model) -> dict[str, float]:
        pred = lab.predictions(m, x)
        v = lab.values(m, ["gradient"], ["targeted_attack"])["gradient"]
        clean = _gradient_map(lab, m, x, pred)
        before = metrics.pearson(metrics.heatmap(clean), jnp.broadcast_to(frame, clean.shape[:3]))
        after = v["targeted_attack/target_pearson"]
        return {
            "accuracy": m.accuracy,
            **_rps_columns(lab, m, x, pred),
            "frame correlation, clean": float(np.mean(before)),
            "frame correlation gained by the manipulation": float(np.mean(after - before)),
            **_map_shape_columns(clean, x),
            "train step ms": 1e3 * _median_step_seconds(m, x, y),
        }

    return {"models": collect(lab, ["standard", "hessian", "lga"], measure)}


def _judge_2(tables: Tables, g: Mapping[str, float]) -> Judged:
    t = tables["models"]
    names = ["standard", "hessian", "lga"]
    acc = _accuracy_gates(t, names, g)
    gap = max(abs(_mean(t, n, "accuracy") - _mean(t, "standard", "accuracy")) for n in names)
    similar = gate("largest accuracy gap to standard", gap, g["accuracy_gap"], at_least=False)
    gain = "frame correlation gained by the manipulation"
    moved = gate(
        "the manipulation moves standard's map", _mean(t, "standard", gain), g["manipulation"]
    )
    base = acc + [similar]
    checks = []
    for col in [c for c in t["lga"] if c.startswith("1 − RPS")] + [gain]:
        gates = base + ([moved] if col == gain else [])
        for other in ("standard", "hessian"):
            checks.append(
                compare(
                    col, ("lga", t["lga"][col]), (other, t[other][col]), higher=False, gates=gates
                )
            )
    step = "train step ms"
    checks.append(
        compare(step, ("lga", t["lga"][step]), ("hessian", t["hessian"][step]), higher=False)
    )
    return base + [moved], checks


claim_2 = Claim(
    2,
    "Local gradient alignment (Joo et al.)",
    "Gradient alignment lowers 1 − RPS of gradient maps at 4, 8 and 16/255 and the frame "
    "correlation a targeted manipulation gains, versus standard and Hessian-norm training, "
    "at similar accuracy; its train step is cheaper than the Hessian-norm step (same batch, "
    "one process).",
    _measure_2,
    _judge_2,
)
