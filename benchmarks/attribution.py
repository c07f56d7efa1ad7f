"""Attribution throughput: images/s and compiled memory per method.

``python -m benchmarks.attribution [--model cnn] [--batch-size 32] [--input-shape 32,32,3]
[--methods ...] [--ig-grid] [--repeats 5] [--warmup 3] [--quick] [--json FILE]``

Each method runs jitted on a batch of random inputs for the model's predicted class; the
time is the median of repeats after warm-up (compile excluded, reported separately).

Method names (``--methods``, comma-separated)::

    gradient
    ig_<rule>_<steps>[_c<chunk>]      integrated gradients; rule: a name of
                                      attribution.METHODS or gl, left, right, middle,
                                      rtrap (riemann_trapezoid), trap (trapezoid);
                                      _c<chunk>: chunk_size path points at a time
    smoothgrad_<samples>[_c<chunk>]   SmoothGrad over the gradient, σ = 0.15 · range
    pgd_<linf|l2>_<steps>             PGD attack, ε = 8/255 (linf) or 0.5 (l2)
    relex[_<iterations>_<samples>]    RelEx mask (default 50 iterations × 50 samples)
    big_<steps>                       boundary search (reference settings) + IG (trapezoid)

``--ig-grid`` adds every rule of ``attribution.METHODS`` at 16, 32, 64 and 128 steps, each
without and with ``chunk_size=16``.
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._setup import BETA, add_common_args, parse_shape, resolve
from benchmarks._timing import compile_and_time, report
from jaxinterp import attacks, attribution, models

Method = Callable[..., jax.Array]
"""``fn(apply_fn, params, x, target, key) -> array``."""

RULE_ALIASES = {
    "gl": "gauss_legendre",
    "gausslegendre": "gauss_legendre",
    "left": "riemann_left",
    "right": "riemann_right",
    "middle": "riemann_middle",
    "rtrap": "riemann_trapezoid",
    "trap": "trapezoid",
}

DEFAULT_METHODS = (
    "gradient",
    *(f"ig_{rule}_32" for rule in attribution.METHODS),
    "ig_gl_16",
    "ig_gl_64",
    "ig_gl_128",
    "ig_gl_128_c16",
    "ig_riemann_left_128",
    "ig_riemann_left_128_c16",
    "smoothgrad_25",
    "smoothgrad_25_c5",
    "pgd_linf_10",
    "pgd_l2_10",
    "relex_20_16",
    "big_50",
)
QUICK_METHODS = (
    "gradient",
    "ig_gl_4",
    "ig_riemann_trapezoid_4_c3",
    "smoothgrad_4_c2",
    "pgd_linf_2",
    "relex_2_2",
    "big_4",
)


def ig_grid() -> list[str]:
    """Every rule at 16–128 steps, without and with ``chunk_size=16``."""
    return [
        f"ig_{rule}_{n}{suffix}"
        for rule in attribution.METHODS
        for n in (16, 32, 64, 128)
        for suffix in ("", "_c16")
    ]


def _canonical(explain: Callable) -> Method:
    """``fn(apply_fn, params, x, target, key)`` of a canonical explainer or attack."""
    return lambda apply_fn, params, x, target, key: explain(apply_fn, params, x, target, key=key)


def _ig(rule: str, num_steps: int, chunk: int | None) -> Method:
    return _canonical(
        attribution.explainer(
            attribution.integrated_gradients, num_steps=num_steps, method=rule, chunk_size=chunk
        )
    )


def _smoothgrad(num_samples: int, chunk: int | None) -> Method:
    return _canonical(attribution.smooth_explainer(num_samples=num_samples, chunk_size=chunk))


def _pgd(norm: str, num_steps: int) -> Method:
    eps = 8 / 255 if norm == "linf" else 0.5
    return _canonical(attacks.pgd(epsilon=eps, num_steps=num_steps, norm=norm))


def _relex(num_iterations: int, num_samples: int) -> Method:
    return _canonical(attribution.relex(num_iterations=num_iterations, num_samples=num_samples))


def _big(num_steps: int) -> Method:
    return _canonical(attribution.boundary_explainer(kind="big", num_steps=num_steps))


def _chunk(text: str | None) -> int | None:
    return None if text is None else int(text)


def build_method(name: str) -> tuple[Method, dict]:
    """Parses a method name (see the module docstring) into a function and its settings."""
    if name == "gradient":
        return _canonical(attribution.explainer(attribution.gradient)), {}
    if m := re.fullmatch(r"ig_([a-z_]+?)_(\d+)(?:_(?:c|chunk)(\d+))?", name):
        rule = RULE_ALIASES.get(m[1], m[1])
        if rule not in attribution.METHODS:
            raise ValueError(f"unknown IG rule {m[1]!r} in {name!r}")
        steps, chunk = int(m[2]), _chunk(m[3])
        return _ig(rule, steps, chunk), {"rule": rule, "steps": steps, "chunk_size": chunk}
    if m := re.fullmatch(r"smoothgrad_(\d+)(?:_c(\d+))?", name):
        samples, chunk = int(m[1]), _chunk(m[2])
        return _smoothgrad(samples, chunk), {"samples": samples, "chunk_size": chunk}
    if m := re.fullmatch(r"pgd_(linf|l2)_(\d+)", name):
        return _pgd(m[1], int(m[2])), {"norm": m[1], "steps": int(m[2])}
    if m := re.fullmatch(r"relex(?:_(\d+)_(\d+))?", name):
        iters, samples = (int(m[1]), int(m[2])) if m[1] else (50, 50)
        return _relex(iters, samples), {"iterations": iters, "samples": samples}
    if m := re.fullmatch(r"big_(\d+)", name):
        return _big(int(m[1])), {"steps": int(m[1])}
    raise ValueError(f"unknown method {name!r}; see `python -m benchmarks.attribution --help`")


COLUMNS = {
    "model": lambda r: r["model"],
    "method": lambda r: r["method"],
    "batch": lambda r: str(r["batch_size"]),
    "ms (median)": lambda r: f"{1e3 * r['median_s']:.1f}",
    "images/s": lambda r: f"{r['images_per_s']:.1f}",
    "compile s": lambda r: f"{r['compile_s']:.1f}",
    "temp MiB": lambda r: f"{r['temp_bytes'] / 2**20:.1f}",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="cnn")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (quick: 2)")
    p.add_argument("--methods", default=None, help="comma-separated; default: a CPU-sized set")
    p.add_argument("--ig-grid", action="store_true", help="add every IG rule × steps × chunk")
    add_common_args(p)
    args = p.parse_args(argv)
    q = args.quick
    args.batch_size = resolve(args.batch_size, 32, 2, q)
    args.input_shape = parse_shape(resolve(args.input_shape, "32,32,3", "8,8,1", q))
    args.repeats = resolve(args.repeats, 5, 1, q)
    args.warmup = resolve(args.warmup, 3, 0, q)
    default = QUICK_METHODS if q else DEFAULT_METHODS
    names = args.methods.split(",") if args.methods else list(default)
    if args.ig_grid:
        names += [n for n in ig_grid() if n not in names]
    args.methods = names
    for name in names:  # Fail on a bad name before any compile.
        try:
            build_method(name)
        except ValueError as err:
            p.error(str(err))
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    model = models.get_model(args.model, num_classes=10, activation="softplus", beta=BETA)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(args.batch_size, *args.input_shape)), jnp.float32)
    params = model.init(jax.random.PRNGKey(0), x[:1])
    target = jnp.argmax(model.apply_fn(params, x), -1)
    rows = []
    for name in args.methods:
        method, settings = build_method(name)
        fn = functools.partial(method, model.apply_fn)
        t = compile_and_time(
            fn, params, x, target, jax.random.PRNGKey(1), repeats=args.repeats, warmup=args.warmup
        )
        rows.append(
            {
                "method": name,
                **settings,
                "model": args.model,
                "batch_size": args.batch_size,
                "input_shape": list(args.input_shape),
                **t,
                "images_per_s": args.batch_size / t["median_s"],
            }
        )
    meta = {"settings": {"repeats": args.repeats, "warmup": args.warmup, "quick": args.quick}}
    report(rows, COLUMNS, args.json, meta=meta)
    return rows


if __name__ == "__main__":
    main()
