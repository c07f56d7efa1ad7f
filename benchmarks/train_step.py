"""Plain train-step throughput of the bundled models.

``python -m benchmarks.train_step [--models cnn,mlp] [--batch-sizes 32,128,512]
[--activations softplus] [--input-shape 32,32,3] [--repeats 20] [--warmup 3] [--quick]
[--json FILE]``

Per model, batch size and activation: median step time after warm-up, examples/s, compile
time and the compiled step's temporary memory, on the first device. This is the denominator
of every penalty's step-time ratio. With ``--activations relu,softplus`` each softplus row
also has its time over the ReLU step's, measured in the same process (what the smooth
activation costs).
"""

from __future__ import annotations

import argparse

from benchmarks._setup import Setup, add_common_args, parse_shape, resolve
from benchmarks._timing import compile_and_time, parse_ints, report
from jaxinterp import models, training


def bench(
    model_name: str,
    batch_size: int,
    input_shape: tuple[int, ...],
    repeats: int,
    warmup: int,
    activation: str = "softplus",
) -> dict:
    """The plain step's timing on one model, batch size and activation."""
    s = Setup(model_name, batch_size, input_shape, activation)
    step = training.make_train_step(s.model.apply_fn, s.tx)
    timing = compile_and_time(step, s.state, s.batch, repeats=repeats, warmup=warmup)
    return {**s.describe(), **timing, "examples_per_s": batch_size / timing["median_s"]}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", "--model", dest="models", default="cnn,mlp")
    p.add_argument("--batch-sizes", default=None, help="default 32,128,512 (quick: 4)")
    p.add_argument("--activations", default="softplus", help="comma-separated from relu,softplus")
    add_common_args(p)
    args = p.parse_args(argv)
    q = args.quick
    sizes = parse_ints(resolve(args.batch_sizes, "32,128,512", "4", q))
    shape = parse_shape(resolve(args.input_shape, "32,32,3", "8,8,1", q))
    repeats, warmup = resolve(args.repeats, 20, 1, q), resolve(args.warmup, 3, 0, q)
    activations = args.activations.split(",")
    unknown = sorted(set(activations) - set(models.ACTIVATIONS))
    if unknown:
        p.error(f"unknown activations {unknown}; choose from {', '.join(models.ACTIVATIONS)}")
    rows = []
    for m in args.models.split(","):
        for b in sizes:
            by_act = {a: bench(m, b, shape, repeats, warmup, a) for a in activations}
            for r in by_act.values():
                if "relu" in by_act:
                    r["ratio_to_relu"] = r["median_s"] / by_act["relu"]["median_s"]
                rows.append(r)
    report(
        rows,
        {
            "model": lambda r: r["model"],
            "batch": lambda r: str(r["batch_size"]),
            "activation": lambda r: r["activation"],
            "step ms (median)": lambda r: f"{1e3 * r['median_s']:.2f}",
            "examples/s": lambda r: f"{r['examples_per_s']:.0f}",
            "compile s": lambda r: f"{r['compile_s']:.2f}",
            "temp MiB": lambda r: f"{r['temp_bytes'] / 2**20:.1f}",
            "time / ReLU step": lambda r: (
                f"{r['ratio_to_relu']:.2f}" if "ratio_to_relu" in r else "-"
            ),
        },
        args.json,
    )
    return rows


if __name__ == "__main__":
    main()
