"""The command line: ``python -m benchmarks.faults`` (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import time
import traceback
from collections.abc import Callable, Sequence

from benchmarks.faults._common import UNCLASSIFIED, Context, print_summary, result, summarize
from benchmarks.faults.concurrency import _concurrency
from benchmarks.faults.configs import _configs
from benchmarks.faults.corruptions import _corruptions
from benchmarks.faults.kills import _kills
from benchmarks.faults.library import _library

GROUPS = ("kills", "corruptions", "concurrency", "configs", "library")

# ------------------------------------------------------------------------------- main

GROUP_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "kills": _kills,
    "corruptions": _corruptions,
    "concurrency": _concurrency,
    "configs": _configs,
    "library": _library,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.faults",
        description="Re-run the fault table: kills, corruptions, concurrency, bad configs and "
        "bad library inputs, each case classified and counted.",
    )
    p.add_argument("--quick", action="store_true", help="a few cases per group")
    p.add_argument("--json", default=None, help="write the machine, summary and cases here")
    p.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help=f"comma-separated, from {', '.join(GROUPS)} (default: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds kill times, damage and fuzzing")
    p.add_argument(
        "--fuzz-scale",
        type=int,
        default=None,
        help="library: examples per function, times the test suite's (default 5; quick 1)",
    )
    p.add_argument(
        "--data-dir", default=None, help="TFDS data dir (default: the library's default)"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per child process")
    args = p.parse_args(argv)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        p.error(f"--groups: unknown {unknown}; choose from {', '.join(GROUPS)}")
    args.groups = groups
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Runs the groups; returns every case (dicts with group, case, outcome, ok, detail)."""
    args = parse_args(argv)
    import jax

    # Start JAX now, with the devices the benchmarks package set (one on CPU): the in-process
    # commands' configure_cpu() then changes nothing, as in any process that started JAX.
    jax.devices()
    if args.data_dir is None:
        from jaxinterp import data

        args.data_dir = data.default_data_dir()
    ctx = Context(args)
    timing: dict[str, dict[str, float]] = {}
    # Every command (in-process and child) reads and prepares data in args.data_dir.
    saved_data_dir = os.environ.get("JAXINTERP_DATA_DIR")
    os.environ["JAXINTERP_DATA_DIR"] = args.data_dir
    try:
        if set(args.groups) - {"library"}:
            from jaxinterp import data

            data.load_split("digits", "train", data_dir=args.data_dir)  # prepared once
        for group in args.groups:
            wall, cpu = time.perf_counter(), _cpu_seconds()
            try:
                GROUP_FUNCTIONS[group](ctx)
            except Exception as e:  # noqa: BLE001 - the harness failed: say so, go on
                where = traceback.extract_tb(e.__traceback__)[-1]
                detail = (
                    f"{type(e).__name__}: {e} ({os.path.basename(where.filename)}:{where.lineno})"
                )
                ctx.emit(result(group, "the group stopped", UNCLASSIFIED, (), detail))
            timing[group] = {
                "wall_s": round(time.perf_counter() - wall, 1),
                "cpu_s": round(_cpu_seconds() - cpu, 1),
            }
    finally:
        ctx.close()
        if saved_data_dir is None:
            os.environ.pop("JAXINTERP_DATA_DIR", None)
        else:
            os.environ["JAXINTERP_DATA_DIR"] = saved_data_dir
    results = ctx.results
    summary = summarize(results)
    for group, t in timing.items():
        if group in summary:
            summary[group].update(t)
    print_summary(summary, results)
    settings = {k: v for k, v in vars(args).items()}
    failures = [r for r in results if not r["ok"]]
    ctx.printer.finish(
        results, args.json, meta={"settings": settings, "summary": summary, "failures": failures}
    )
    return results


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
