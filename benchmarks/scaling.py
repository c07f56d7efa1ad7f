"""Data-parallel train-step throughput over 1, 2, 4, 8 devices, and per-device efficiency.

``python -m benchmarks.scaling [--devices 1,2,4,8] [--model cnn] [--batch-size 256 |
--per-device-batch 32] [--input-shape 32,32,3] [--penalty none|input_gradient_norm|...]
[--mode auto|subprocess|inprocess] [--repeats 10] [--warmup 3] [--quick] [--json FILE]``

The step is ``jaxinterp.training``'s: ``make_train_step`` (cross-entropy + the penalty at
weight 1 with its default impl, Adam), jitted by ``jit_train_step`` over
``make_data_mesh(N)`` (params replicated, batch sharded on ``data``, state donated), fed by
``shard_batch``. Per device count: median step time after warm-up, examples/s, compile time,
temporary memory, and the efficiency ``throughput_N / (N · throughput_1)`` (relative to the
smallest count measured when 1 is not among them). ``--batch-size`` fixes the global batch
(strong scaling); ``--per-device-batch`` fixes each device's share (weak scaling: the
global batch grows with N).

On CPU (``--mode auto`` picks it) each count runs in a fresh child process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``, which must be set before JAX is
imported; the fake devices share the same cores, so a CPU run checks the sharded code path
and its overhead, not a speed-up. On GPU/TPU the real devices are used in this process
(``N <= jax.device_count()``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import jax

from benchmarks._setup import Setup, add_common_args, parse_shape, resolve
from benchmarks._timing import parse_ints, report, temp_bytes, time_calls
from benchmarks.regularizers import PENALTIES, default_impl, penalty_factories
from jaxinterp import regularizers, training

MARKER = "SCALING_RESULT "
"""Prefix of the child's one JSON line on stdout."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--devices", default=None, help="device counts (default 1,2,4,8; quick 1,2)")
    p.add_argument("--model", default="cnn")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--batch-size", type=int, default=None, help="global batch (default 256)")
    size.add_argument("--per-device-batch", type=int, default=None, help="weak scaling")
    p.add_argument("--penalty", default="none", choices=("none", *PENALTIES))
    p.add_argument("--mode", default="auto", choices=("auto", "subprocess", "inprocess"))
    p.add_argument("--child-timeout", type=float, default=900.0, help="seconds per child")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    add_common_args(p)
    args = p.parse_args(argv)
    q = args.quick
    args.devices = parse_ints(resolve(args.devices, "1,2,4,8", "1,2", q))
    if args.per_device_batch is None:
        args.batch_size = resolve(args.batch_size, 256, 8, q)
        bad = [n for n in args.devices if args.batch_size % n]
        if bad:
            p.error(f"--batch-size {args.batch_size} does not divide over {bad} devices")
    args.input_shape = parse_shape(resolve(args.input_shape, "32,32,3", "8,8,1", q))
    args.repeats = resolve(args.repeats, 10, 1, q)
    args.warmup = resolve(args.warmup, 3, 0, q)
    return args


def global_batch(args: argparse.Namespace, n: int) -> int:
    return args.batch_size if args.per_device_batch is None else args.per_device_batch * n


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of the jitted data-parallel step on the first ``n`` devices."""
    if n > jax.device_count():
        raise ValueError(f"{n} devices asked for, {jax.device_count()} available")
    b = global_batch(args, n)
    s = Setup(args.model, b, args.input_shape)
    penalty = None
    if args.penalty != "none":
        factory = penalty_factories(s.model)[args.penalty]
        impl = default_impl(args.penalty)
        penalty = regularizers.combine(**{args.penalty: (1.0, factory(impl))})
    mesh = training.make_data_mesh(n)
    step = training.jit_train_step(
        training.make_train_step(s.model.apply_fn, s.tx, penalty=penalty), mesh
    )
    state = training.replicate(s.state, mesh)
    batch = training.shard_batch(s.batch, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    holder = [state]

    def call():
        holder[0], metrics = compiled(holder[0], batch)  # the state is donated: carry it on
        return metrics

    t = time_calls(call, repeats=args.repeats, warmup=args.warmup)
    return {
        "devices": n,
        "global_batch": b,
        "per_device_batch": b // n,
        **t,
        "examples_per_s": b / t["median_s"],
        "compile_s": compile_s,
        "temp_bytes": temp_bytes(compiled),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
    }


def child_env(n: int) -> dict[str, str]:
    """The environment of a child with ``n`` fake CPU devices (other XLA flags kept)."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={n}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_child(n: int, argv: list[str], timeout: float) -> dict[str, Any]:
    """Runs ``python -m benchmarks.scaling --child n ...`` and returns its result."""
    cmd = [sys.executable, "-m", "benchmarks.scaling", *argv, "--child", str(n)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        cmd, env=child_env(n), cwd=root, capture_output=True, text=True, timeout=timeout
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"scaling child with {n} devices failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(MARKER) :])


def add_efficiency(rows: list[dict[str, Any]]) -> None:
    """``efficiency = (throughput_N / N) / (throughput_ref / ref)``, ref the smallest N."""
    ref = min(rows, key=lambda r: r["devices"])
    per_device_ref = ref["examples_per_s"] / ref["devices"]
    for r in rows:
        r["efficiency"] = r["examples_per_s"] / r["devices"] / per_device_ref
        r["efficiency_ref_devices"] = ref["devices"]


COLUMNS = {
    "model": lambda r: r["model"],
    "penalty": lambda r: r["penalty"],
    "devices": lambda r: str(r["devices"]),
    "global batch": lambda r: str(r["global_batch"]),
    "per device": lambda r: str(r["per_device_batch"]),
    "step ms (median)": lambda r: f"{1e3 * r['median_s']:.1f}",
    "examples/s": lambda r: f"{r['examples_per_s']:.0f}",
    "efficiency": lambda r: f"{r['efficiency']:.2f}",
    "compile s": lambda r: f"{r['compile_s']:.1f}",
    "temp MiB": lambda r: f"{r['temp_bytes'] / 2**20:.1f}",
}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child is not None:
        print(MARKER + json.dumps(measure(args.child, args)), flush=True)
        return []
    mode = args.mode
    if mode == "auto":
        mode = "subprocess" if jax.default_backend() == "cpu" else "inprocess"
    rows = []
    for n in args.devices:
        print(f"[scaling] {n} device(s), {mode} ...", flush=True)
        row = measure(n, args) if mode == "inprocess" else run_child(n, argv, args.child_timeout)
        rows.append(row)
    for r in rows:
        r.update(
            model=args.model,
            penalty=args.penalty,
            input_shape=list(args.input_shape),
            mode=mode,
            scaling="weak" if args.per_device_batch is not None else "strong",
        )
    add_efficiency(rows)
    settings = {"repeats": args.repeats, "warmup": args.warmup, "quick": args.quick, "mode": mode}
    report(rows, COLUMNS, args.json, meta={"settings": settings})
    return rows


if __name__ == "__main__":
    main()
