"""Plain train-step throughput of the bundled models.

``python -m benchmarks.train_step [--models cnn,mlp] [--batch-sizes 32,128,512]
[--input-shape 32,32,3] [--repeats 20] [--json FILE]``

Per model and batch size: median step time after warm-up, examples/s, compile time and the
compiled step's temporary memory, on the first device. This is the denominator of every
penalty's step-time ratio.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

from benchmarks._timing import compile_and_time, report
from jaxinterp import models, training


def bench(model_name: str, batch_size: int, input_shape: tuple[int, ...], repeats: int) -> dict:
    model = models.get_model(model_name, num_classes=10, activation="softplus", beta=3.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch_size, *input_shape)).astype(np.float32)
    y = rng.integers(0, 10, size=batch_size).astype(np.int32)
    tx = optax.adam(1e-3)
    state = training.create_train_state(
        model.init(jax.random.PRNGKey(0), x[:1]), tx, key=jax.random.PRNGKey(1)
    )
    step = training.make_train_step(model.apply_fn, tx)
    timing = compile_and_time(step, state, {"image": x, "label": y}, repeats=repeats)
    return {
        "model": model_name,
        "batch_size": batch_size,
        "input_shape": list(input_shape),
        **timing,
        "examples_per_s": batch_size / timing["median_s"],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,mlp")
    p.add_argument("--batch-sizes", default="32,128,512")
    p.add_argument("--input-shape", default="32,32,3")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    rows = [
        bench(m, int(b), shape, args.repeats)
        for m in args.models.split(",")
        for b in args.batch_sizes.split(",")
    ]
    report(
        rows,
        {
            "model": lambda r: r["model"],
            "batch": lambda r: str(r["batch_size"]),
            "step ms (median)": lambda r: f"{1e3 * r['median_s']:.2f}",
            "examples/s": lambda r: f"{r['examples_per_s']:.0f}",
            "compile s": lambda r: f"{r['compile_s']:.2f}",
            "temp MiB": lambda r: f"{r['temp_bytes'] / 2**20:.1f}",
        },
        args.json,
    )
    return rows


if __name__ == "__main__":
    main()
