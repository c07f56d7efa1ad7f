"""Penalty step time against the plain step, fast vs autodiff.

``python -m benchmarks.regularizers [--models cnn,mlp] [--batch-sizes 32,128,512]
[--input-shape 32,32,3] [--penalties ...] [--impls fast,autodiff] [--repeats 10]
[--warmup 3] [--quick] [--json FILE]``

For each model, batch size, penalty and impl: the median time of a full train step
(cross-entropy + the penalty, gradient, Adam update), its ratio to the plain step measured in
the same process, compile time and the compiled step's temporary memory. The penalties are
the ones the targets name, at their training settings: input-gradient norm, gradient
alignment (ℓ2 + cos, ``detach_source=True``), Hessian norm (1 Hutchinson probe), activation
sensitivity (1 probe, every layer), curvature (CURE). ``default`` marks the impl each
factory uses when none is given.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

from benchmarks._setup import Setup, add_common_args, parse_shape, resolve
from benchmarks._timing import compile_and_time, parse_ints, report
from jaxinterp import regularizers, training

PENALTIES = (
    "input_gradient_norm",
    "gradient_alignment",
    "hessian_norm",
    "activation_sensitivity",
    "curvature",
)


def penalty_factories(model: Any) -> dict[str, Callable[[str], Callable]]:
    """name -> factory(impl) for every penalty with a fast and an autodiff implementation;
    ``model`` (a :class:`jaxinterp.models.Model`) gives activation sensitivity its
    ``features_fn`` and ``layer_fn``, as ``jaxinterp train`` does."""
    return {
        "input_gradient_norm": lambda impl: regularizers.input_gradient_norm(impl=impl),
        "gradient_alignment": lambda impl: regularizers.gradient_alignment(
            detach_source=True, impl=impl
        ),
        "hessian_norm": lambda impl: regularizers.hessian_norm(num_probes=1, impl=impl),
        "activation_sensitivity": lambda impl: regularizers.activation_sensitivity(
            model.features_fn, layers=None, num_probes=1, impl=impl, layer_fn=model.layer_fn
        ),
        "curvature": lambda impl: regularizers.curvature(impl=impl),
    }


def default_impl(name: str) -> str:
    """The ``impl`` a penalty factory uses when the caller gives none."""
    return inspect.signature(getattr(regularizers, name)).parameters["impl"].default


def bench(
    model_name: str,
    batch_size: int,
    input_shape: tuple[int, ...],
    names: list[str],
    impls: list[str],
    repeats: int,
    warmup: int,
) -> list[dict]:
    """Rows for the plain step and each (penalty, impl) on one model and batch size."""
    s = Setup(model_name, batch_size, input_shape)

    def time_step(penalty: Callable | None) -> dict:
        step = training.make_train_step(s.model.apply_fn, s.tx, penalty=penalty)
        return compile_and_time(step, s.state, s.batch, repeats=repeats, warmup=warmup)

    plain = time_step(None)
    rows = [{"penalty": "plain", "impl": "-", "default": False, **plain, "ratio": 1.0}]
    factories = penalty_factories(s.model)
    for name in names:
        for impl in impls:
            pen = regularizers.combine(**{name: (1.0, factories[name](impl))})
            t = time_step(pen)
            rows.append(
                {
                    "penalty": name,
                    "impl": impl,
                    "default": impl == default_impl(name),
                    **t,
                    "ratio": t["median_s"] / plain["median_s"],
                }
            )
    for r in rows:
        r.update(s.describe())
    return rows


COLUMNS = {
    "model": lambda r: r["model"],
    "batch": lambda r: str(r["batch_size"]),
    "penalty": lambda r: r["penalty"],
    "impl": lambda r: r["impl"] + (" (default)" if r["default"] else ""),
    "step ms (median)": lambda r: f"{1e3 * r['median_s']:.1f}",
    "ratio to plain": lambda r: f"{r['ratio']:.2f}",
    "compile s": lambda r: f"{r['compile_s']:.1f}",
    "temp MiB": lambda r: f"{r['temp_bytes'] / 2**20:.1f}",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", "--model", dest="models", default="cnn,mlp")
    p.add_argument("--batch-sizes", default=None, help="default 32,128,512 (quick: 4)")
    p.add_argument("--penalties", default=None, help=f"comma-separated from {','.join(PENALTIES)}")
    p.add_argument("--impls", default="fast,autodiff")
    add_common_args(p)
    args = p.parse_args(argv)
    q = args.quick
    args.batch_sizes = parse_ints(resolve(args.batch_sizes, "32,128,512", "4", q))
    args.input_shape = parse_shape(resolve(args.input_shape, "32,32,3", "8,8,1", q))
    args.repeats = resolve(args.repeats, 10, 1, q)
    args.warmup = resolve(args.warmup, 3, 0, q)
    args.penalties = args.penalties.split(",") if args.penalties else list(PENALTIES)
    unknown = sorted(set(args.penalties) - set(PENALTIES))
    if unknown:
        p.error(f"unknown penalties {unknown}; choose from {', '.join(PENALTIES)}")
    args.impls = args.impls.split(",")
    if set(args.impls) - set(regularizers.IMPLS):
        p.error(f"--impls must be from {', '.join(regularizers.IMPLS)}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    rows = []
    for model_name in args.models.split(","):
        for b in args.batch_sizes:
            rows += bench(
                model_name,
                b,
                args.input_shape,
                args.penalties,
                args.impls,
                args.repeats,
                args.warmup,
            )
    settings = {
        "penalty_weight": 1.0,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "quick": args.quick,
    }
    report(rows, COLUMNS, args.json, meta={"settings": settings})
    return rows


if __name__ == "__main__":
    main()
