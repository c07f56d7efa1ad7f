"""The five claims of METHODS §5, each measured on trained models and judged.

Every ``claim_N(lab)`` returns a dict: ``id``, ``title``, ``statement``, ``columns`` and
``rows`` (a table whose cells are ``mean ± std`` over the study's seeds), ``checks`` (each a
stated ordering with the numbers compared and whether it holds) and ``status``:
``"holds"`` (every check holds), ``"partly holds"``, ``"does not hold"`` or
``"not measured"`` (with ``reason``). Checks compare means over seeds.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinterp import attacks, attribution, metrics, training
from jaxinterp.experiments.explain import attribution_fn
from jaxinterp.experiments.lab import (
    Lab,
    Model,
    activation_sensitivity,
    collect,
    means,
    order,
    status,
    table,
)
from jaxinterp.experiments.penalties import build_penalty

__all__ = ["CLAIMS"]


def claim_1(lab: Lab) -> dict:
    names = ["standard", "pgd_at", "trades", "act_sens"]

    def measure(m: Model) -> dict[str, float]:
        v = lab.values(m, ["gradient"], ["rps", "max_sensitivity", "topk_attack"])["gradient"]
        return {
            "accuracy": m.accuracy,
            "activation sensitivity": activation_sensitivity(lab, m),
            "RPS pearson": float(np.mean(v["rps/pearson"])),
            "max-sensitivity": float(np.mean(v["max_sensitivity/value"])),
            "top-k intersection (attack)": float(np.mean(v["topk_attack/topk_intersection"])),
        }

    per_seed = collect(lab, names, measure)
    mean = means(per_seed)
    ranking = ["act_sens", "pgd_at", "standard"]
    checks = [
        order(
            "activation sensitivity",
            [(n, mean[n]["activation sensitivity"]) for n in ranking],
            False,
        ),
        order("RPS pearson", [(n, mean[n]["RPS pearson"]) for n in ranking], True),
        order("max-sensitivity", [(n, mean[n]["max-sensitivity"]) for n in ranking], False),
        order(
            "top-k intersection",
            [(n, mean[n]["top-k intersection (attack)"]) for n in ranking],
            True,
        ),
    ]
    columns = list(next(iter(per_seed.values())))
    return {
        "id": 1,
        "title": "Activation sensitivity (Moshe et al.)",
        "statement": "Activation sensitivity orders regularised < adversarially trained < "
        "standard; interpretability metrics (gradient maps: RPS similarity, max-sensitivity, "
        "top-k intersection under the top-k attack) in the opposite order.",
        "columns": ["model"] + columns,
        "rows": table(per_seed, columns),
        "checks": checks,
        "status": status(checks),
    }


def _median_step_seconds(m: Model, x: np.ndarray, y: np.ndarray, repeats: int = 5) -> float:
    """Median time of one jitted train step of ``m``'s config (compile and warm-up excluded)."""
    tx = optax.adam(1e-3)
    penalty = build_penalty(m.config.penalties, context={"features_fn": m.features_fn})
    step = jax.jit(
        training.make_train_step(m.apply_fn, tx, penalty=penalty, ce_weight=m.config.ce_weight)
    )
    state = training.create_train_state(m.params, tx, key=jax.random.PRNGKey(0))
    batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
    compiled = step.lower(state, batch).compile()
    jax.block_until_ready(compiled(state, batch))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(state, batch))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def claim_2(lab: Lab) -> dict:
    names = ["standard", "hessian", "lga"]
    x, y, _ = lab.xy()
    xb, yb = x[: min(128, len(x))], y[: min(128, len(x))]

    def measure(m: Model) -> dict[str, float]:
        v = lab.values(m, ["gradient"], ["rps", "targeted_attack"])["gradient"]
        return {
            "accuracy": m.accuracy,
            "RPS pearson": float(np.mean(v["rps/pearson"])),
            "RPS SSIM": float(np.mean(v["rps/ssim"])),
            "manipulated map ~ target (pearson)": float(
                np.mean(v["targeted_attack/target_pearson"])
            ),
            "clean ~ manipulated (spearman)": float(np.mean(v["targeted_attack/spearman"])),
            "train step ms": 1e3 * _median_step_seconds(m, xb, yb),
        }

    per_seed = collect(lab, names, measure)
    mean = means(per_seed)
    acc = {n: mean[n]["accuracy"] for n in names}
    checks = [
        order(
            "RPS pearson",
            [("lga", mean["lga"]["RPS pearson"]), ("standard", mean["standard"]["RPS pearson"])],
            True,
        ),
        order(
            "RPS pearson",
            [("lga", mean["lga"]["RPS pearson"]), ("hessian", mean["hessian"]["RPS pearson"])],
            True,
        ),
        order(
            "RPS SSIM",
            [("lga", mean["lga"]["RPS SSIM"]), ("standard", mean["standard"]["RPS SSIM"])],
            True,
        ),
        order(
            "RPS SSIM",
            [("lga", mean["lga"]["RPS SSIM"]), ("hessian", mean["hessian"]["RPS SSIM"])],
            True,
        ),
    ]
    key = "manipulated map ~ target (pearson)"
    for other in ("standard", "hessian"):
        checks.append(
            order(
                f"manipulation success ({key})",
                [("lga", mean["lga"][key]), (other, mean[other][key])],
                False,
            )
        )
    gap = max(abs(acc["lga"] - acc["standard"]), abs(acc["hessian"] - acc["standard"]))
    checks.append(
        {
            "check": f"similar accuracy: largest gap to standard {gap:.3f} <= 0.05 "
            f"({', '.join(f'{n} {a:.3f}' for n, a in acc.items())})",
            "holds": bool(gap <= 0.05),
        }
    )
    t = "train step ms"
    checks.append(
        order("step cost", [("lga", mean["lga"][t]), ("hessian", mean["hessian"][t])], False)
    )
    columns = list(next(iter(per_seed.values())))
    return {
        "id": 2,
        "title": "Local gradient alignment (Joo et al.)",
        "statement": "Gradient alignment raises RPS similarity and lowers the success of the "
        "targeted manipulation (frame target) versus standard and Hessian-norm training at "
        "similar accuracy; its step is cheaper than the Hessian-norm step (same batch of "
        f"{len(xb)}, in one process).",
        "columns": ["model"] + columns,
        "rows": table(per_seed, columns),
        "checks": checks,
        "status": status(checks),
    }


def _consistency(maps: list[jax.Array], k: int) -> np.ndarray:
    """Mean pairwise top-k intersection of normalised maps, per example ``[B]``."""
    hs = [attacks.normalized_map(a) for a in maps]
    pairs = [(i, j) for i in range(len(hs)) for j in range(i + 1, len(hs))]
    return np.mean([np.asarray(metrics.topk_intersection(hs[i], hs[j], k)) for i, j in pairs], 0)


@functools.lru_cache(maxsize=16)
def _boundary_fns(apply_fn: Callable, cw_binary_search_steps: int) -> tuple[Callable, Callable]:
    """Jitted ``(boundary, ig)`` for one architecture: ``boundary(params, x, target, key)``
    gives ``(found, BIG, cos(∇f_y(x), ∇f_y(x')))``; ``ig(params, x, target, baseline)``."""
    search = attacks.boundary_search(cw_binary_search_steps=cw_binary_search_steps)

    def boundary(params: Any, x: jax.Array, target: jax.Array, key: jax.Array):
        r = search(apply_fn, params, x, target, key=key)
        s = attribution.class_score(apply_fn, params, target, "logit")
        g, g_b = attribution.gradient(s, x), attribution.gradient(s, r.point)
        return (
            r.found,
            attribution.big(s, x, r.point, num_steps=32),
            metrics.cosine_similarity(g, g_b),
        )

    def ig(params: Any, x: jax.Array, target: jax.Array, baseline: jax.Array) -> jax.Array:
        s = attribution.class_score(apply_fn, params, target, "logit")
        return attribution.integrated_gradients(s, x, baseline=baseline, num_steps=32)

    return jax.jit(boundary), jax.jit(ig)


def _mean_where(values: np.ndarray, ok: np.ndarray) -> float:
    """Mean of ``values[ok]``; NaN when no example qualifies."""
    return float(np.mean(values[ok])) if np.any(ok) else float("nan")


def _localisation(lab: Lab, m: Model) -> dict[str, float]:
    """On the localisation data: consistency of IG over 4 baselines and of BIG over
    ``lab.boundary_searches`` searches (seeds), and the energy game of IG (zero baseline) and
    BIG (first search), over the examples where every search found a boundary point."""
    x, _, extras = lab.xy(lab.localisation_test)
    boundary, ig = _boundary_fns(m.apply_fn, lab.cw_binary_search_steps)
    pred = jnp.asarray(lab.predictions(m, x))
    k = max(1, int(round(lab.settings.topk_fraction * x.shape[1] * x.shape[2])))
    key = jax.random.PRNGKey(m.seed)
    xj = jnp.asarray(x)
    baselines = [  # black, white, uniform noise, blurred input (Wang et al. compare such)
        jnp.zeros_like(xj),
        jnp.ones_like(xj),
        jax.random.uniform(key, xj.shape, xj.dtype),
        attribution.gaussian_smoothing(x.shape[1] / 8)(xj),
    ]
    ig_maps = [ig(m.params, xj, pred, b) for b in baselines]
    runs = [
        boundary(m.params, xj, pred, jax.random.fold_in(key, i))
        for i in range(lab.boundary_searches)
    ]
    big_maps = [b for _, b, _ in runs]
    ok = np.all([np.asarray(found) for found, _, _ in runs], axis=0)
    box = metrics.box_mask(jnp.asarray(extras["bbox"]), x.shape[1:3])
    n = lab.boundary_searches
    return {
        "accuracy": m.accuracy,
        "IG consistency (4 baselines)": _mean_where(_consistency(ig_maps, k), ok),
        f"BIG consistency ({n} searches)": _mean_where(_consistency(big_maps, k), ok),
        "IG energy game": _mean_where(np.asarray(metrics.energy_game(ig_maps[0], box)), ok),
        "BIG energy game": _mean_where(np.asarray(metrics.energy_game(big_maps[0], box)), ok),
        "boundary found": float(np.mean(ok)),
    }


def _boundary_cosine(lab: Lab, m: Model) -> float:
    """Mean ``cos(∇f_y(x), ∇f_y(x'))`` over the examples with a boundary point ``x'``."""
    x, _, _ = lab.xy()
    pred = jnp.asarray(lab.predictions(m, x))
    found, _, cos = _boundary_fns(m.apply_fn, lab.cw_binary_search_steps)[0](
        m.params, jnp.asarray(x), pred, jax.random.PRNGKey(m.seed)
    )
    return _mean_where(np.asarray(cos), np.asarray(found))


def claim_3(lab: Lab) -> dict:
    robust = ["standard", "pgd_at", "trades"]
    per_seed = collect(lab, robust, lambda m: {"cos(∇f_y(x), ∇f_y(x'))": _boundary_cosine(lab, m)})
    mean = means(per_seed)
    c = "cos(∇f_y(x), ∇f_y(x'))"
    checks = [
        order(c, [(n, mean[n][c]), ("standard", mean["standard"][c])], True) for n in robust[1:]
    ]
    rows = table(per_seed, [c])
    columns = ["model", c]
    loc_rows: list[list[str]] = []
    if lab.localisation and lab.localisation_test is not None:
        loc: dict[str, dict[str, list[float]]] = {"standard (localisation data)": {}}
        for seed, m in lab.localisation.items():
            lab.log(f"  localisation model (seed {seed})")
            for col, v in _localisation(lab, m).items():
                loc["standard (localisation data)"].setdefault(col, []).append(v)
        lm = means(loc)["standard (localisation data)"]
        big = f"BIG consistency ({lab.boundary_searches} searches)"
        checks += [
            order(
                "baseline consistency (top-k intersection)",
                [("BIG", lm[big]), ("IG", lm["IG consistency (4 baselines)"])],
                True,
            ),
            order(
                "energy game", [("BIG", lm["BIG energy game"]), ("IG", lm["IG energy game"])], True
            ),
        ]
        loc_columns = list(loc["standard (localisation data)"])
        loc_rows = [["model"] + loc_columns] + table(loc, loc_columns)
    result: dict[str, Any] = {
        "id": 3,
        "title": "Boundary attributions (Wang et al.)",
        "statement": "BIG is less baseline-sensitive than IG and more concentrated (energy game) "
        "on a standard model; cos(∇f_y(x), ∇f_y(x')) at the boundary point x' is higher for "
        "robust models.",
        "columns": columns,
        "rows": rows,
        "extra_table": loc_rows,
        "checks": checks,
        "status": status(checks),
    }
    if not loc_rows:
        result["status"] = "partly measured: " + result["status"]
        result["reason"] = "no localisation dataset in this study: energy game not measured"
    return result


def claim_4(lab: Lab) -> dict:
    methods = ["relex", "smoothgrad", "ig", "gradient"]

    def measure(m: Model) -> dict[str, float]:
        v = lab.values(m, methods, ["retrieval"])
        ok = v["gradient"]["retrieval/attack_success"] > 0
        out = {
            f"{name} retrieval": float(np.mean(v[name]["retrieval/retrieval"][ok]))
            for name in methods
        }
        return out | {"attack success": float(np.mean(ok))}

    per_seed = collect(lab, ["standard"], measure)
    mean = means(per_seed)["standard"]
    checks = [
        order(
            "retrieval rate",
            [("relex", mean["relex retrieval"]), (o, mean[f"{o} retrieval"])],
            True,
        )
        for o in methods[1:]
    ]
    columns = list(per_seed["standard"])
    return {
        "id": 4,
        "title": "RelEx retrieval (Lim et al.)",
        "statement": "On adversarial inputs (PGD, ε = "
        f"{lab.settings.epsilon}), masking with the RelEx map of the clean prediction's class "
        "retrieves that class more often than SmoothGrad, IG and gradient masks (rates over "
        "the successfully attacked examples).",
        "columns": ["model"] + columns,
        "rows": table(per_seed, columns),
        "checks": checks,
        "status": status(checks),
    }


def claim_5(lab: Lab) -> dict:
    methods = ["regadv", "pgd_perturbation", "gradient"]

    def measure(m: Model) -> dict[str, float]:
        v = lab.values(m, methods, ["ape"])
        x, _, _ = lab.xy()
        pred = jnp.asarray(lab.predictions(m, x))
        out = {}
        for name in methods:
            out[f"{name} APE"] = float(np.mean(v[name]["ape/ape"]))
            out[f"{name} APE (complement)"] = float(np.mean(v[name]["ape/ape_complement"]))
        for i, name in enumerate(methods):
            a = attribution_fn(m.apply_fn, name)(
                m.params, jnp.asarray(x), pred, jax.random.PRNGKey(i)
            )
            h = attacks.normalized_map(a)[..., None]
            out[f"{name} TV"] = float(np.mean(attribution.total_variation(h)))
        return out

    per_seed = collect(lab, ["standard"], measure)
    mean = means(per_seed)["standard"]
    checks = []
    for other in methods[1:]:
        checks.append(
            order("APE", [("regadv", mean["regadv APE"]), (other, mean[f"{other} APE"])], True)
        )
        checks.append(
            order(
                "total variation",
                [("regadv", mean["regadv TV"]), (other, mean[f"{other} TV"])],
                False,
            )
        )
    columns = list(per_seed["standard"])
    return {
        "id": 5,
        "title": "Regularized adversarial explanations (Shoshan & Ratner)",
        "statement": "Regularized adversarial explanations score higher APE and lower total "
        "variation (of the map normalised to sum 1) than plain PGD perturbations and gradient "
        "maps.",
        "columns": ["model"] + columns,
        "rows": table(per_seed, columns),
        "checks": checks,
        "status": status(checks),
    }


CLAIMS: dict[int, Callable[[Lab], dict]] = {
    1: claim_1,
    2: claim_2,
    3: claim_3,
    4: claim_4,
    5: claim_5,
}
