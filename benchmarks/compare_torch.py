"""jaxinterp against PyTorch eager, torch.func, Captum, torchattacks: same model, weights, method.

``python -m benchmarks.compare_torch [--models cnn] [--batch-size 128] [--input-shape 32,32,3]
[--penalties ...] [--attributions ...] [--ig-steps 32] [--sg-samples 25] [--ig-chunk 8]
[--occ-window 4] [--occ-stride 2] [--occ-chunk 64] [--iterative ...] [--apgd-steps 10]
[--check-batch 16] [--check-only] [--jax-impls both|default] [--torch-device cpu|cuda]
[--threads N] [--repeats 10] [--warmup 3] [--attr-repeats 5] [--attr-warmup 1] [--quick]
[--json FILE]``

Needs the optional extra ``pip install ".[bench]"`` (torch, captum, torchattacks); without
torch or captum, prints how to install it and exits 0; without torchattacks, the APGD rows
are skipped with a printed reason. The PyTorch models hold the JAX params' weights (layouts
converted).

Before anything is timed, the values are checked (``benchmarks/_torch_checks.py``): logits,
each penalty's value and params-gradient (both jaxinterp impls against both PyTorch
variants, with the random draws jaxinterp makes), each attribution (Grad-CAM and occlusion
too) against Captum's, and APGD-CE/-T against torchattacks' (not draw for draw: ε-ball, box,
robust accuracy and the loss reached; ``benchmarks/_torch_baselines.py``). A disagreement
raises. The checks run on the first ``--check-batch`` examples.

Timed per case: a full train step (cross-entropy + penalty, backward, Adam) in PyTorch
eager (``autograd.grad(create_graph=True)``, the reference implementations' way), in
``torch.func`` and in jaxinterp (jitted, the penalty's default impl; the other impl is in
the JSON); attributions: Captum vs jaxinterp at equal steps, rule and chunking (rows
without a chunk pass ``None`` to both: Captum then runs one pass, jaxinterp on CPU passes
of at most 512 examples, ``jaxinterp.core.ops.auto_chunk_size``; also
Grad-CAM of conv4 and occlusion at equal window, stride and chunk); iterative cases (PGD-10
and PGD-40 L∞, CW-L2, the boundary search, RelEx, the PGD-AT and TRADES train steps): the
straightforward PyTorch eager loop (``benchmarks/_torch_iterative.py``) vs jaxinterp;
APGD-CE and APGD-T (ε = 8/255, ``--apgd-steps``, 1 restart) against torchattacks, on the model's
own predictions. Each case's calls are timed in alternation (one call of each a round,
the order reversed every other round), and its ratio is the median over rounds of the
torch call's time over jaxinterp's in the same round (> 1: jaxinterp is faster): a slow
drift of a shared machine then cannot favour the side timed first.
Targets, at batch 128 on the CNN with 32×32×3 inputs: the plain and every penalty step at
least as fast as PyTorch eager, IG at least as fast as Captum, the iterative cases ≥ 1.5×
PyTorch eager. Each row is printed as soon as it is timed.
"""

from __future__ import annotations

import argparse
import os

from benchmarks._setup import add_common_args, parse_shape, resolve
from benchmarks._timing import RowPrinter
from benchmarks.regularizers import PENALTIES

ITERATIVE = (
    "pgd10",
    "pgd40",
    "cw_l2",
    "boundary_search",
    "relex",
    "pgd_at_step",
    "trades_step",
    "apgd_ce",
    "apgd_t",
)
INSTALL_HINT = 'compare_torch needs the optional extra: pip install ".[bench]" (torch, captum)'


def torch_missing() -> str | None:
    """Why torch or captum cannot be imported, or ``None`` if both can."""
    try:
        import captum.attr  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        return str(err)
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", "--model", dest="models", default="cnn")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 (quick: 4)")
    p.add_argument("--penalties", default=None, help="comma-separated; default: all; '' none")
    p.add_argument(
        "--attributions", default=None, help="case names (see the table); default: all; '' none"
    )
    p.add_argument("--ig-steps", type=int, default=None, help="IG steps (default 32, quick 4)")
    p.add_argument("--ig-chunk", type=int, default=None, help="chunked IG case (default 8)")
    p.add_argument("--sg-samples", type=int, default=None, help="SmoothGrad samples (25)")
    p.add_argument("--occ-window", type=int, default=4, help="occlusion window side (4)")
    p.add_argument("--occ-stride", type=int, default=2, help="occlusion stride (2)")
    p.add_argument(
        "--occ-chunk", type=int, default=None, help="occlusion windows per eval (64, quick 4)"
    )
    p.add_argument("--attr-repeats", type=int, default=None, help="attribution repeats (5)")
    p.add_argument("--attr-warmup", type=int, default=None, help="attribution warm-up (1)")
    p.add_argument("--iterative", default=None, help="iterative cases; default: all; '' none")
    p.add_argument("--cw-steps", type=int, default=None, help="CW steps per round (default 100)")
    p.add_argument("--apgd-steps", type=int, default=None, help="APGD steps (default 10, quick 2)")
    p.add_argument("--check-batch", type=int, default=16, help="examples in the value checks")
    p.add_argument("--check-only", action="store_true", help="value checks only, no timing")
    p.add_argument(
        "--jax-impls",
        choices=("default", "both"),
        default=None,
        help="time the penalty's default impl only, or both (default: both; quick: default)",
    )
    p.add_argument(
        "--torch-device", default="cpu", help="where PyTorch is timed (cpu, cuda); checks: cpu"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    add_common_args(p)
    args = p.parse_args(argv)
    q = args.quick
    args.models = args.models.split(",")
    args.batch_size = resolve(args.batch_size, 128, 4, q)
    args.input_shape = parse_shape(resolve(args.input_shape, "32,32,3", "8,8,3", q))
    args.repeats = resolve(args.repeats, 10, 1, q)
    args.warmup = resolve(args.warmup, 3, 1, q)
    args.attr_repeats = resolve(args.attr_repeats, 5, 1, q)
    args.attr_warmup = resolve(args.attr_warmup, 1, 1, q)
    args.ig_steps = resolve(args.ig_steps, 32, 4, q)
    args.ig_chunk = resolve(args.ig_chunk, 8, 2, q)
    args.jax_impls = resolve(args.jax_impls, "both", "default", q)
    args.sg_samples = resolve(args.sg_samples, 25, 4, q)
    args.penalties = list(PENALTIES) if args.penalties is None else _names(args.penalties)
    if set(args.penalties) - set(PENALTIES):
        p.error(f"--penalties must be from {', '.join(PENALTIES)}")
    args.attributions = None if args.attributions is None else _names(args.attributions)
    args.iterative = list(ITERATIVE) if args.iterative is None else _names(args.iterative)
    if set(args.iterative) - set(ITERATIVE):
        p.error(f"--iterative must be from {', '.join(ITERATIVE)}")
    args.cw_steps = resolve(args.cw_steps, 100, 2, q)
    args.apgd_steps = resolve(args.apgd_steps, 10, 2, q)
    args.occ_chunk = resolve(args.occ_chunk, 64, 4, q)
    if args.attributions is None or "occlusion" in args.attributions:
        w, st = args.occ_window, args.occ_stride
        if not all(_occlusion_fits(n, w, st) for n in args.input_shape[:2]):
            p.error(
                f"occlusion: --occ-window {w} and --occ-stride {st} must give H − w and W − w "
                f"multiples of the stride for inputs {args.input_shape[0]}×{args.input_shape[1]} "
                "(else jaxinterp's and Captum's windows differ)"
            )
    return args


def _occlusion_fits(size: int, window: int, stride: int) -> bool:
    """Whether jaxinterp's and Captum's occlusion windows coincide along a side of ``size``."""
    return 1 <= window <= size and stride >= 1 and (size - window) % stride == 0


def _names(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1e3 * v:.1f}"


COLUMNS = {
    "model": lambda r: r["model"],
    "batch": lambda r: str(r["batch_size"]),
    "case": lambda r: r["case"],
    "torch ms": lambda r: _ms(r.get("torch_s")),
    "torch.func ms": lambda r: _ms(r.get("torch_func_s")),
    "jaxinterp ms": lambda r: (
        _ms(r.get("jax_s")) + (f" ({r['jax_impl']})" if "jax_impl" in r else "")
    ),
    "torch / jax": lambda r: _ratio(r.get("torch_over_jax")),
    "torch.func / jax": lambda r: _ratio(r.get("torch_func_over_jax")),
    "values": lambda r: r["check"]["status"],
    "target": lambda r: r.get("target_text", "-"),
    # The plain step's share of the peak is part of its row, so a stopped run still has it.
    "jax GFLOP/s (share of matmul peak)": lambda r: (
        f"{r['jax_gflops_per_s']:.1f} ({100 * r['share_of_peak']:.0f}% of "
        f"{r['matmul_peak_gflops_per_s']:.0f})"
        if "share_of_peak" in r
        else "-"
    ),
}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    missing = torch_missing()
    if missing:
        print(f"{INSTALL_HINT}; {missing}")
        return []
    import torch

    from benchmarks import _compare_cases as cases

    torch.set_num_threads(args.threads)
    printer = RowPrinter(COLUMNS)
    rows: list[dict] = []
    for model_name in args.models:
        rows += cases.run_model(model_name, args, emit=None if args.check_only else printer.row)
    for r in rows:
        cases.judge(r, cases.TARGETS, cases.TARGET_SETTING)
        if args.check_only:
            printer.row(r)
    printer.finish(rows, args.json, meta=cases.meta(args, cases.TARGETS, cases.TARGET_SETTING))
    cases.print_targets(rows, cases.TARGETS, cases.TARGET_SETTING)
    for r in rows:
        if "share_of_peak" in r:
            print(
                f"[{r['model']}] plain step: {r['flops'] / 1e9:.2f} GFLOP (XLA cost analysis), "
                f"{r['jax_gflops_per_s']:.1f} GFLOP/s = {100 * r['share_of_peak']:.0f}% of a "
                f"{r['matmul_peak_gflops_per_s']:.1f} GFLOP/s float32 matmul measured in this run"
            )
    return rows


if __name__ == "__main__":
    main()
