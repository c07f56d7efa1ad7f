"""Every ``lax.fori_loop`` method against its unrolled form, and the old convolution.

``python -m benchmarks.loops [--quick] [--json FILE]``

For each iterative method of the library (attacks, boundary search, RelEx, attribution
attacks, regularized adversarial, APE, the PGD-AT and TRADES train steps) on the softplus
CNN, three timings of the same code on the same inputs, in one process:

* ``loop``: as the library runs it (``lax.fori_loop``, the loop-safe convolution);
* ``unrolled``: ``jax.lax.fori_loop`` patched to ``unroll=True`` while tracing (no ``while``
  in the compiled program: XLA:CPU canonicalizes every convolution);
* ``old conv``: the loop form with ``lax.conv_general_dilated`` as the CNN's convolution
  (what the library did before ``loop_safe_conv``), for the methods named by ``--old``.

The forms are timed in alternation (:func:`benchmarks._timing.time_interleaved`), and
``loop / unrolled`` (the overhead of the loop) and ``old conv / loop`` (the speed-up of the
loop-safe convolution) are medians over rounds of the ratio of the two forms' times in the
same round. The ``slow convs`` column counts the non-canonical convolutions left inside
``while`` bodies (:func:`jaxinterp.models.loop_convolutions`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import optax
from jax import lax

from benchmarks._setup import BETA, NUM_CLASSES, add_common_args, parse_shape, random_batch, resolve
from benchmarks._timing import RowPrinter, compile_jit, paired_ratio, time_interleaved
from jaxinterp import attacks, attribution, metrics, models, regularizers, training

__all__ = ["cases", "main", "unrolled_loops"]


@contextlib.contextmanager
def unrolled_loops() -> Iterator[None]:
    """While active, ``jax.lax.fori_loop`` traces fully unrolled (``unroll=True``)."""
    original = jax.lax.fori_loop
    jax.lax.fori_loop = functools.partial(original, unroll=True)
    try:
        yield
    finally:
        jax.lax.fori_loop = original


def _grad_map(apply_fn, params, x, label):
    """The input gradient of the labelled logit (the attribution the attacks target)."""

    def score(z):
        return jnp.sum(jnp.take_along_axis(apply_fn(params, z), label[:, None], axis=1))

    return jax.grad(score)(x)


def cases(steps: int) -> dict[str, Callable[..., Callable]]:
    """Name -> ``build(apply_fn) -> fn(params, x, y, key)``, each with ``steps`` iterations."""
    eps = 8 / 255

    def attack(factory):
        return lambda f: lambda p, x, y, k: factory(f, p, x, y, key=k)

    def train(penalty):
        def build(f):
            tx = optax.adam(1e-3)
            step = training.make_train_step(f, tx, penalty=penalty)

            def run(p, x, y, k):
                state = training.create_train_state(p, tx, key=k)
                return step(state, {"image": x, "label": y})[1]["loss"]

            return run

        return build

    relex = attribution.relex(num_iterations=steps, num_samples=4)
    return {
        f"pgd{steps}": attack(attacks.pgd(epsilon=eps, num_steps=steps)),
        f"pgd{4 * steps}": attack(attacks.pgd(epsilon=eps, num_steps=4 * steps)),
        "cw_l2": attack(attacks.carlini_wagner_l2(num_steps=steps, binary_search_steps=2)),
        "boundary_search": attack(
            attacks.boundary_search(
                epsilons=(0.5, 1.0),
                pgd_steps=steps,
                cw_steps=steps,
                cw_binary_search_steps=2,
                refine_steps=5,
            )
        ),
        "relex": lambda f: lambda p, x, y, k: relex(f, p, x, y, key=k),
        "topk_attack": lambda f: (
            lambda p, x, y, k: (
                attacks.topk_attack(_grad_map, epsilon=eps, num_steps=steps, k=64)(f, p, x, y).x_adv
            )
        ),
        "targeted_manipulation": lambda f: (
            lambda p, x, y, k: (
                attacks.targeted_manipulation(
                    _grad_map,
                    epsilon=eps,
                    num_steps=steps,
                    learning_rate=1e-3,
                    target_map=attacks.frame_target(x.shape[1:3]),
                )(f, p, x, y).x_adv
            )
        ),
        "regularized_adversarial": attack(
            attribution.regularized_adversarial(epsilon=eps, num_steps=steps, l1=1e-3)
        ),
        "ape": lambda f: (
            lambda p, x, y, k: metrics.ape(f, p, x, y, jnp.abs(x), epsilon=eps, num_steps=steps)[
                "ape"
            ]
        ),
        "pgd_at_step": train(
            regularizers.combine(
                at=(1.0, regularizers.adversarial_training(epsilon=eps, num_steps=steps))
            )
        ),
        "trades_step": train(
            regularizers.combine(kl=(6.0, regularizers.trades(epsilon=eps, num_steps=steps)))
        ),
    }


def _model(conv) -> models.Model:
    return models.get_model(
        "cnn", num_classes=NUM_CLASSES, activation="softplus", beta=BETA, conv=conv
    )


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p)
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--steps", type=int, default=None, help="iterations per method (default 10)")
    p.add_argument("--methods", default=None, help="comma-separated subset of the cases")
    p.add_argument(
        "--old", default=None, help="cases also timed with the old convolution (default: PGD)"
    )
    args = p.parse_args(argv)
    q = args.quick
    batch = random_batch(
        resolve(args.batch_size, 32, 4, q),
        parse_shape(resolve(args.input_shape, "32,32,3", "8,8,1", q)),
    )
    repeats, warmup = resolve(args.repeats, 5, 1, q), resolve(args.warmup, 1, 0, q)
    steps = resolve(args.steps, 10, 2, q)
    table = cases(steps)
    names = list(table) if args.methods is None else [m.strip() for m in args.methods.split(",")]
    unknown = sorted(set(names) - set(table))
    if unknown:
        p.error(f"unknown methods {unknown}; known: {', '.join(table)}")
    old = {f"pgd{steps}"} if args.old is None else {m.strip() for m in args.old.split(",")}
    safe, plain = _model(models.loop_safe_conv), _model(lax.conv_general_dilated)
    x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
    params = jax.jit(safe.init)(jax.random.PRNGKey(0), x[:1])
    key = jax.random.PRNGKey(1)
    args_ = (params, x, y, key)

    printer = RowPrinter(
        {
            "method": lambda r: r["method"],
            "loop ms": lambda r: f"{r['loop_s'] * 1e3:.1f}",
            "unrolled ms": lambda r: f"{r['unrolled_s'] * 1e3:.1f}",
            "loop/unrolled": lambda r: f"{r['loop_over_unrolled']:.2f}",
            "slow convs": lambda r: str(r["slow_convs"]),
            "old conv ms": lambda r: f"{r['old_s'] * 1e3:.1f}" if "old_s" in r else "-",
            "old/loop": lambda r: f"{r['old_over_loop']:.2f}" if "old_s" in r else "-",
        }
    )
    rows = []
    for name in names:
        programs = {"loop": compile_jit(table[name](safe.apply_fn), *args_)}
        with unrolled_loops():
            programs["unrolled"] = compile_jit(table[name](safe.apply_fn), *args_)
        if name in old:
            programs["old"] = compile_jit(table[name](plain.apply_fn), *args_)
        t = time_interleaved(
            {k: c.call for k, c in programs.items()}, repeats=repeats, warmup=warmup
        )
        row = {
            "method": name,
            **{f"{k}_s": v["median_s"] for k, v in t.items()},
            **{f"{k}_compile_s": c.compile_s for k, c in programs.items()},
            "loop_over_unrolled": paired_ratio(t["loop"]["times"], t["unrolled"]["times"]),
            "slow_convs": len(models.loop_convolutions(programs["loop"].executable.as_text())),
            "batch_size": int(x.shape[0]),
            "input_shape": list(x.shape[1:]),
            "steps": steps,
        }
        if "old" in t:
            row["old_over_loop"] = paired_ratio(t["old"]["times"], t["loop"]["times"])
        printer.row(row)
        rows.append(row)
    printer.finish(
        rows, args.json, meta={"benchmark": "loops", "repeats": repeats, "warmup": warmup}
    )
    return rows


if __name__ == "__main__":
    main()
