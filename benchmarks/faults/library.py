"""The ``library`` group: every explainer, attack, penalty and metric on fuzzed and NaN inputs."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.faults._common import UNCLASSIFIED, Context, _emit_aggregate, result

LIBRARY_PASS = (
    "finite result of the right shape",
    "error naming the argument",
    "NaN where required",
)


# --------------------------------------------------------------------------- library


def fuzz_outcome(spec: Any, case: Any, fuzz: Any = None) -> tuple[str, str]:
    """One call of a tests/test_fuzz.py ``Spec`` on a fuzzed ``Case``, classified by the
    suite's property (a broken argument must raise naming it; anything else must give a
    finite result of the documented shape)."""
    if fuzz is None:
        from tests import test_fuzz as fuzz
    try:
        x, y, a = case.arrays()
        x_bad = fuzz._x_bad(spec, case)
        broken = list(spec.x_names) if x_bad else []
        if spec.labels and case.labels_bad:
            broken += spec.y_names
        outside = not x_bad and spec.domain is not None and not spec.domain(case.shape)
    except Exception as e:  # noqa: BLE001 - the harness, not the library
        return UNCLASSIFIED, f"harness: {e!r}"
    try:
        out = fuzz._call(spec, case, x, y, a)
    except (ValueError, TypeError) as e:
        message = f"{type(e).__name__}: {e}".splitlines()[0]
        allowed = broken + (list(spec.x_names) + list(spec.domain_names) if outside else [])
        if not allowed:
            return "valid input refused", f"{case}: {message}"
        if any(fuzz._names(n, message) for n in allowed):
            return "error naming the argument", ""
        return "error not naming the argument", f"{message} (broken: {allowed})"
    except Exception as e:  # noqa: BLE001 - any other exception is a failure
        return (
            "other error",
            f"{case}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
        )
    if broken:
        finite = _all_finite(spec.finite(out))
        return (
            "silent wrong answer" if finite else "NaN instead of an error"
        ), f"{case}: broken {broken}"
    try:
        spec.check(out, case.shape)
    except AssertionError as e:
        return "wrong shape", f"{case}: {e}"
    if not _all_finite(spec.finite(out)):
        return "non-finite result", f"{case}"
    return "finite result of the right shape", ""


def _all_finite(tree: Any) -> bool:
    import jax

    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(tree))


def nan_outcome(out: Any, clean: Any, leaves: Callable[[Any], list]) -> tuple[str, str]:
    """A map whose example 1 is NaN/inf: every value of example 1 must be NaN and the
    other examples as on the clean map."""
    for v, c in zip(leaves(out), leaves(clean), strict=True):
        v, c = np.asarray(v), np.asarray(c)
        if not np.all(np.isnan(v[1])):
            return "silent wrong answer", f"example 1 gave {v[1].ravel()[:3]} instead of NaN"
        if not np.allclose(v[[0, 2]], c[[0, 2]], rtol=1e-5, atol=1e-6, equal_nan=True):
            return "wrong answer for the other examples", ""
    return "NaN where required", ""


def _draw(fuzz: Any, name: str, n: int, seed: int) -> list:
    """``n`` cases of the suite's strategy, drawn by hypothesis from ``seed`` (and ``name``),
    after the suite's always-valid case."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    drawn: list = []

    @hseed(zlib.crc32(f"{seed}:{name}".encode()))
    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=fuzz.CASES)
    def draw(case: Any) -> None:
        drawn.append(case)

    draw()
    return [fuzz.VALID, *drawn]


QUICK_LIBRARY = ("gradient", "fgsm", "input_gradient_norm", "gini", "pearson")


def _library(ctx: Context) -> None:
    try:
        from tests import test_bad_input as bad
        from tests import test_fuzz as fuzz
    except ImportError as e:
        ctx.emit(result("library", "import tests.test_fuzz", UNCLASSIFIED, (), repr(e)))
        return
    specs = (
        [
            ("attribution", n, lambda n=n: fuzz._explainer_spec(n))
            for n in sorted(fuzz.EXPLAINER_SETTINGS)
        ]
        + [("attacks", n, lambda n=n: fuzz._attack_spec(n)) for n in sorted(fuzz.ATTACK_SETTINGS)]
        + [
            ("regularizers", n, lambda n=n: fuzz._penalty_spec(n))
            for n in sorted(fuzz.PENALTY_SETTINGS)
        ]
        + [("metrics", n, lambda n=n: fuzz.METRIC_SPECS[n]) for n in sorted(fuzz.METRIC_SPECS)]
    )
    scale = ctx.args.fuzz_scale if ctx.args.fuzz_scale is not None else (1 if ctx.quick else 5)
    for family, name, build in specs:
        if ctx.quick and name not in QUICK_LIBRARY:
            continue
        t0 = time.perf_counter()
        try:
            spec = build()
            cases = _draw(fuzz, name, fuzz._n(name) * scale, ctx.args.seed)
        except Exception as e:  # noqa: BLE001
            ctx.emit(
                result("library", f"{family}: {name}", UNCLASSIFIED, (), repr(e), family=family)
            )
            continue
        outs = [(fuzz_outcome(spec, c, fuzz), c) for c in cases]
        _emit_function(ctx, family, name, outs, time.perf_counter() - t0)
    for family, name, call in _extra_library_cases(bad):
        if ctx.quick and name not in ("topk_intersection(k=0)", "NaN map: gini"):
            continue
        t0 = time.perf_counter()
        try:
            outcome = call()
        except Exception as e:  # noqa: BLE001
            outcome = ("other error", f"{type(e).__name__}: {e}")
        _emit_function(ctx, family, name, [(outcome, None)], time.perf_counter() - t0)


def _emit_function(ctx: Context, family: str, name: str, outs: list, seconds: float) -> None:
    cases = [
        result("library", f"{family}: {name}: {c}" if c is not None else f"{family}: {name}",
               o, LIBRARY_PASS, d, family=family, function=name)
        for (o, d), c in outs
    ]  # fmt: skip
    _emit_aggregate(ctx, "library", f"{family}: {name}", cases, seconds)


def _extra_library_cases(bad: Any) -> list[tuple[str, str, Callable[[], tuple[str, str]]]]:
    """NaN attributions (tests/test_bad_input.py's tables), out-of-range labels under jit,
    ``key=None`` / ``key=0`` and ``k`` of top-k."""
    import jax
    import jax.numpy as jnp

    from jaxinterp import attacks, attribution, core, metrics, regularizers

    out: list[tuple[str, str, Callable[[], tuple[str, str]]]] = []

    def nan_case(name: str) -> tuple[str, str]:
        fn, maps = bad.NAN_CASES[name]
        jitted = bad._jit(fn)
        broken, inf = list(maps), list(maps)
        broken[-1] = maps[-1].at[(1,) + (0,) * (maps[-1].ndim - 1)].set(jnp.nan)
        inf[0] = maps[0].at[(1,) + (0,) * (maps[0].ndim - 1)].set(-jnp.inf)
        clean = jitted(*maps)
        for o in (jitted(*broken), jitted(*inf)):
            outcome = nan_outcome(o, clean, lambda t: bad._leaves(t, name))
            if outcome[0] != "NaN where required":
                return outcome
        return "NaN where required", ""

    def explain_case(name: str) -> tuple[str, str]:
        fn = bad.EXPLAIN_CASES[name]
        clean = bad._jit(lambda: fn(bad._explain_b))()
        return nan_outcome(bad._jit(lambda: fn(bad._nan_explain))(), clean, jax.tree.leaves)

    for name in sorted(bad.NAN_CASES):
        out.append(("metrics", f"NaN map: {name}", lambda name=name: nan_case(name)))
    for name in sorted(bad.EXPLAIN_CASES):
        out.append(("metrics", f"NaN explanation: {name}", lambda name=name: explain_case(name)))

    logits = jnp.array([[0.5, 1.0, 2.0], [1.0, 0.0, 0.0], [0.3, 0.2, 0.1]])
    labels = jnp.array([-1, bad.K, 1])

    def labels_case(fn: Callable) -> tuple[str, str]:
        v = np.asarray(jax.jit(fn)(logits, labels))
        if not np.all(np.isnan(v[:2])):
            return "silent wrong answer", f"labels -1, K under jit gave {v[:2]}"
        return "NaN where required", ""

    for name, fn in (("core.ce_loss", core.ce_loss), ("core.margin_loss", core.margin_loss)):
        out.append(
            ("regularizers", f"labels -1 and K under jit: {name}", lambda fn=fn: labels_case(fn))
        )

    def must_refuse(call: Callable[[], Any], arg: str) -> tuple[str, str]:
        try:
            value = call()
        except (ValueError, TypeError) as e:
            msg = f"{type(e).__name__}: {e}".splitlines()[0]
            named = re.search(rf"(?<![\w]){re.escape(arg)}(?![\w])", msg) is not None
            return (
                ("error naming the argument", "")
                if named
                else ("error not naming the argument", msg)
            )
        except Exception as e:  # noqa: BLE001
            return "other error", f"{type(e).__name__}: {e}"
        finite = _all_finite(value)
        return (
            "silent wrong answer" if finite else "NaN instead of an error"
        ), f"{arg} was accepted"

    f, p, x, y = bad.apply_fn, bad.PARAMS, bad.X, bad.Y
    m, n = bad._M, bad._N
    refusals = [
        (
            "attacks",
            "pgd key=None",
            lambda: attacks.pgd(epsilon=0.1, num_steps=1)(f, p, x, y, key=None),
            "key",
        ),
        (
            "attacks",
            "pgd key=0",
            lambda: attacks.pgd(epsilon=0.1, num_steps=1)(f, p, x, y, key=0),
            "key",
        ),
        (
            "attribution",
            "smoothgrad key=None",
            lambda: attribution.EXPLAINERS.build("smoothgrad", num_samples=2)(f, p, x, y, key=None),
            "key",
        ),
        (
            "attribution",
            "smoothgrad key=0",
            lambda: attribution.EXPLAINERS.build("smoothgrad", num_samples=2)(f, p, x, y, key=0),
            "key",
        ),
        (
            "attribution",
            "rise key=None",
            lambda: attribution.rise(attribution.class_score(f, p, y), x, key=None),
            "key",
        ),
        (
            "regularizers",
            "hessian_norm key=None",
            lambda: regularizers.hessian_norm()(f, p, x, y, key=None),
            "key",
        ),
        (
            "metrics",
            "random_perturbation_similarity key=None",
            lambda: metrics.random_perturbation_similarity(bad._explain, x, key=None),
            "key",
        ),
        ("metrics", "topk_intersection(k=0)", lambda: metrics.topk_intersection(m, n, 0), "k"),
        ("metrics", "topk_intersection(k=-1)", lambda: metrics.topk_intersection(m, n, -1), "k"),
        ("metrics", "topk_intersection(k=1.5)", lambda: metrics.topk_intersection(m, n, 1.5), "k"),
        (
            "metrics",
            "topk_intersection(k=65) of 64 pixels",
            lambda: metrics.topk_intersection(m, n, 65),
            "k",
        ),
        (
            "attribution",
            "gradient of an empty batch",
            lambda: attribution.gradient(attribution.class_score(f, p, y[:0]), x[:0]),
            "x",
        ),
        (
            "attribution",
            "gradient of uint8 images",
            lambda: attribution.gradient(
                attribution.class_score(f, p, y), (np.asarray(x) * 255).astype(np.uint8)
            ),
            "x",
        ),
        (
            "attribution",
            "gradient of NCHW images",
            lambda: attribution.gradient(
                attribution.class_score(f, p, y), jnp.full((2, 1, 5, 6), 0.5)
            ),
            "x",
        ),
    ]
    for family, name, call, arg in refusals:
        out.append((family, name, lambda call=call, arg=arg: must_refuse(call, arg)))
    return out
