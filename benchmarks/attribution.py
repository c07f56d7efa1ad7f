"""Attribution throughput: images/s and compiled memory per method.

``python -m benchmarks.attribution [--model cnn] [--batch-size 32] [--input-shape 32,32,3]
[--methods ...] [--repeats 5] [--warmup 3] [--json FILE]``

Each method runs jitted on a batch of random inputs for the model's predicted class; the
time is the median of repeats after warm-up (compile excluded, reported separately).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._timing import compile_and_time, report
from jaxinterp import attacks, attribution, models


def _methods() -> dict:
    """name -> fn(apply_fn, params, x, target, key) -> attribution."""

    def scored(method):
        def run(apply_fn, params, x, target, key):
            return method(attribution.class_score(apply_fn, params, target), x, key)

        return run

    def ig(num_steps, chunk_size=None, method="gauss_legendre"):
        return scored(
            lambda s, x, key: attribution.integrated_gradients(
                s, x, num_steps=num_steps, method=method, chunk_size=chunk_size
            )
        )

    search = attacks.boundary_search()

    def big(apply_fn, params, x, target, key):
        point = search(apply_fn, params, x, target, key=key).point
        score = attribution.class_score(apply_fn, params, target)
        return attribution.big(score, x, point, num_steps=50)

    return {
        "gradient": scored(lambda s, x, key: attribution.gradient(s, x)),
        "ig_gl_16": ig(16),
        "ig_gl_50": ig(50),
        "ig_gl_50_chunk10": ig(50, chunk_size=10),
        "ig_left_50": ig(50, method="riemann_left"),
        "ig_gl_128": ig(128),
        "smoothgrad_25": scored(
            lambda s, x, key: attribution.smooth(attribution.gradient, num_samples=25)(
                s, x, key=key
            )
        ),
        "pgd_linf_10": lambda apply_fn, params, x, target, key: attacks.pgd(
            epsilon=8 / 255, num_steps=10
        )(apply_fn, params, x, target, key=key),
        "relex": lambda apply_fn, params, x, target, key: attribution.relex()(
            apply_fn, params, x, target, key=key
        ),
        "big_50": big,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--input-shape", default="32,32,3")
    p.add_argument("--methods", default=None, help="comma-separated; default: all")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after compiling")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    methods = _methods()
    names = args.methods.split(",") if args.methods else list(methods)
    model = models.get_model(args.model, num_classes=10, activation="softplus", beta=3.0)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(args.batch_size, *shape)), jnp.float32)
    params = model.init(jax.random.PRNGKey(0), x[:1])
    target = jnp.argmax(model.apply_fn(params, x), -1)
    rows = []
    for name in names:
        fn = functools.partial(methods[name], model.apply_fn)
        t = compile_and_time(
            fn, params, x, target, jax.random.PRNGKey(1), repeats=args.repeats, warmup=args.warmup
        )
        rows.append(
            {
                "method": name,
                "model": args.model,
                "batch_size": args.batch_size,
                "input_shape": list(shape),
                **t,
                "images_per_s": args.batch_size / t["median_s"],
            }
        )
    report(
        rows,
        {
            "method": lambda r: r["method"],
            "batch": lambda r: str(r["batch_size"]),
            "ms (median)": lambda r: f"{1e3 * r['median_s']:.1f}",
            "images/s": lambda r: f"{r['images_per_s']:.1f}",
            "compile s": lambda r: f"{r['compile_s']:.1f}",
            "temp MiB": lambda r: f"{r['temp_bytes'] / 2**20:.1f}",
        },
        args.json,
    )
    return rows


if __name__ == "__main__":
    main()
