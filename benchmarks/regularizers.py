"""Penalty step time against the plain step, fast vs autodiff.

``python -m benchmarks.regularizers [--model cnn] [--batch-sizes 32,128,512]
[--input-shape 32,32,3] [--penalties ...] [--repeats 10] [--json FILE]``

For each penalty and impl: the median time of a full train step (cross-entropy + the
penalty, gradient, Adam update), its ratio to the plain step measured in the same process,
compile time and the compiled step's temporary memory.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

from benchmarks._timing import compile_and_time, report
from jaxinterp import models, regularizers, training


def penalty_factories(features_fn):
    """name -> factory(impl) for every penalty with a fast and an autodiff implementation."""
    out = {
        "input_gradient_norm": lambda impl: regularizers.input_gradient_norm(impl=impl),
        "gradient_alignment": lambda impl: regularizers.gradient_alignment(impl=impl),
        "hessian_norm": lambda impl: regularizers.hessian_norm(num_probes=1, impl=impl),
        "curvature": lambda impl: regularizers.curvature(impl=impl),
    }
    if hasattr(regularizers, "activation_sensitivity"):
        out["activation_sensitivity"] = lambda impl: regularizers.activation_sensitivity(
            features_fn, num_probes=1, impl=impl
        )
    return out


def bench(model_name, batch_size, input_shape, names, repeats):
    model = models.get_model(model_name, num_classes=10, activation="softplus", beta=3.0)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(size=(batch_size, *input_shape)).astype(np.float32),
        "label": rng.integers(0, 10, size=batch_size).astype(np.int32),
    }
    tx = optax.adam(1e-3)
    params = model.init(jax.random.PRNGKey(0), batch["image"][:1])
    state = training.create_train_state(params, tx, key=jax.random.PRNGKey(1))

    def time_step(penalty):
        step = training.make_train_step(model.apply_fn, tx, penalty=penalty)
        return compile_and_time(step, state, batch, repeats=repeats)

    plain = time_step(None)
    rows = [{"penalty": "plain", "impl": "-", **plain, "ratio": 1.0}]
    factories = penalty_factories(model.features_fn)
    for name in names:
        for impl in ("fast", "autodiff"):
            pen = regularizers.combine(**{name: (1.0, factories[name](impl))})
            t = time_step(pen)
            rows.append(
                {"penalty": name, "impl": impl, **t, "ratio": t["median_s"] / plain["median_s"]}
            )
    for r in rows:
        r.update(model=model_name, batch_size=batch_size, input_shape=list(input_shape))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn")
    p.add_argument("--batch-sizes", default="32,128,512")
    p.add_argument("--input-shape", default="32,32,3")
    p.add_argument("--penalties", default=None, help="comma-separated; default: all")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    names = args.penalties.split(",") if args.penalties else list(penalty_factories(None))
    rows = []
    for b in args.batch_sizes.split(","):
        rows += bench(args.model, int(b), shape, names, args.repeats)
    report(
        rows,
        {
            "model": lambda r: r["model"],
            "batch": lambda r: str(r["batch_size"]),
            "penalty": lambda r: r["penalty"],
            "impl": lambda r: r["impl"],
            "step ms (median)": lambda r: f"{1e3 * r['median_s']:.1f}",
            "ratio to plain": lambda r: f"{r['ratio']:.2f}",
            "compile s": lambda r: f"{r['compile_s']:.1f}",
            "temp MiB": lambda r: f"{r['temp_bytes'] / 2**20:.1f}",
        },
        args.json,
    )
    return rows


if __name__ == "__main__":
    main()
