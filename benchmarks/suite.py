"""All benchmarks in one short run, one JSON and one Markdown file: ``benchmarks.suite``.

``python -m benchmarks.suite [--accelerator] [--quick] [--out DIR]``

Runs, one after another in this process (the scaling benchmark in its own child processes
on CPU): the regularizer step ratios, the attribution throughput, the loop benchmark, the
scaling over devices and, when the ``bench`` extra is installed, the PyTorch comparison.
``--accelerator`` picks settings sized for a GPU or TPU (batch 128, full step counts,
PyTorch timed on ``cuda`` when torch sees one) that finish in a few minutes there; the
default settings are sized for a CPU. Every part prints its rows as it measures them, and
``DIR/suite.json`` and ``DIR/suite.md`` collect every table with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable

from benchmarks import attribution, compare_torch, loops, regularizers, scaling
from benchmarks._timing import machine

__all__ = ["main", "parts"]


class _Tee(io.TextIOBase):
    """Writes to the real stdout as it comes and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.stream.flush()
        return self.copy.write(text)


def parts(accelerator: bool, quick: bool) -> list[tuple[str, Callable, list[str]]]:
    """``(name, main, argv)`` of each part."""
    if quick:
        common = ["--quick"]
        return [
            ("regularizers", regularizers.main, [*common, "--models", "mlp"]),
            ("attribution", attribution.main, [*common, "--methods", "gradient"]),
            ("loops", loops.main, [*common, "--methods", "pgd2"]),
            ("scaling", scaling.main, [*common, "--devices", "1,2"]),
            (
                "compare_torch",
                compare_torch.main,
                [
                    *common,
                    "--models",
                    "mlp",
                    "--penalties",
                    "input_gradient_norm",
                    "--attributions",
                    "",
                    "--iterative",
                    "pgd10",
                ],
            ),
        ]
    batch = "128" if accelerator else "32"
    torch_device = ["--torch-device", "cuda"] if accelerator and _torch_cuda() else []
    return [
        (
            "regularizers",
            regularizers.main,
            ["--models", "cnn", "--batch-sizes", batch, "--repeats", "5"],
        ),
        ("attribution", attribution.main, ["--model", "cnn", "--batch-size", batch]),
        ("loops", loops.main, ["--batch-size", batch]),
        ("scaling", scaling.main, ["--model", "cnn", "--batch-size", "256"]),
        (
            "compare_torch",
            compare_torch.main,
            [
                "--models",
                "cnn",
                "--batch-size",
                batch,
                "--repeats",
                "5",
                "--jax-impls",
                "default",
                *torch_device,
            ],
        ),
    ]


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", action="store_true", help="settings sized for a GPU/TPU")
    p.add_argument("--quick", action="store_true", help="tiny shapes: checks the code only")
    p.add_argument("--out", default="benchmark_suite", help="directory for suite.json/.md")
    p.add_argument("--parts", default=None, help="comma-separated subset of the parts")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    chosen = parts(args.accelerator, args.quick)
    if args.parts is not None:
        names = {n.strip() for n in args.parts.split(",")}
        chosen = [c for c in chosen if c[0] in names]
    results, sections = {}, [f"# Benchmark suite\n\nMachine: `{json.dumps(machine())}`\n"]
    for name, fn, part_argv in chosen:
        print(f"\n## {name}: {' '.join(part_argv)}", flush=True)
        tee = _Tee(sys.stdout)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            rows = fn([*part_argv, "--json", os.path.join(args.out, f"{name}.json")])
        seconds = time.perf_counter() - t0
        results[name] = {"argv": part_argv, "seconds": seconds, "rows": rows}
        sections.append(
            f"## {name} ({seconds:.0f} s)\n\n`{' '.join(part_argv)}`\n\n"
            f"{tee.copy.getvalue().strip()}\n"
        )
    summary = {"machine": machine(), "accelerator": args.accelerator, "parts": results}
    with open(os.path.join(args.out, "suite.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    with open(os.path.join(args.out, "suite.md"), "w") as f:
        f.write("\n".join(sections))
    print(f"\nwrote {args.out}/suite.json and {args.out}/suite.md", flush=True)
    return summary


if __name__ == "__main__":
    main()
