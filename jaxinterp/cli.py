"""The ``jaxinterp`` command line.

``jaxinterp train --config NAME|FILE.py [--config.field=value ...] --workdir DIR``
``jaxinterp explain --workdir DIR [--methods ig,big,...] --out FILE.png``
``jaxinterp evaluate --workdir DIR [--methods ...] [--metrics ...] --out FILE.json``
``jaxinterp reproduce [--quick] [--config reproduce_NAME] --out DIR``
``jaxinterp prepare --dataset NAME [--data-dir DIR]``
``jaxinterp configs``

``--config`` takes a Python file or the name of a packaged config (``digits_standard``;
``jaxinterp configs`` lists them, see :mod:`jaxinterp.configs`).

On a CPU backend the command runs with XLA:CPU's convolutions kept out of YNNPACK and freed
host memory kept for reuse, on one XLA device (which runs on every core; see
:func:`jaxinterp.configure_cpu`); a flag already in ``XLA_FLAGS`` is kept as the user set it
(``--xla_force_host_platform_device_count=N`` for N devices).

Bad input (a config that does not load or validate, a bad path, no permission, a full disk)
ends the command with exit status 2 and one line on stderr naming the file or field (set
``JAXINTERP_DEBUG=1`` for the traceback); a loss that became NaN/Inf ends it with status 1
(the checkpoints written before stay). An unexpected error ends it with its traceback and
status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


class _RegistryHelp(str):
    """A help string that lists a registry's names when ``--help`` is printed (argparse
    expands help with ``%``), so that building the parser does not import JAX."""

    registry: str

    def __new__(cls, text: str, registry: str) -> _RegistryHelp:
        obj = super().__new__(cls, text)
        obj.registry = registry
        return obj

    def __mod__(self, params: object) -> str:
        import importlib

        module, name = self.registry.rsplit(".", 1)
        names = ", ".join(getattr(importlib.import_module(module), name))
        return str(self) % params + names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxinterp",
        description="Train classifiers with explanation regularizers, explain and evaluate them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train a model. Any config field can be overridden with "
        "--config.FIELD=VALUE (nested: --config.a.b=VALUE). A workdir that holds checkpoints "
        "is resumed from the latest one.",
    )
    train.add_argument(
        "--config",
        required=True,
        help="a packaged config's name (e.g. digits_standard; see 'jaxinterp configs') or "
        "the path of a Python file whose get_config() returns the config",
    )
    train.add_argument("--workdir", required=True, help="where checkpoints and logs go")

    explain = sub.add_parser(
        "explain",
        help="attribution maps of a trained model as a PNG grid",
        description="Explain the predicted class of test examples with each method; writes one "
        "PNG (rows: examples; columns: the input and each method, on one colour scale).",
    )
    explain.add_argument("--workdir", required=True, help="a workdir written by 'train'")
    explain.add_argument(
        "--methods",
        default="gradient,ig,smoothgrad,big,relex",
        help=_RegistryHelp("comma-separated, from: ", "jaxinterp.attribution.EXPLAINERS"),
    )
    explain.add_argument("--out", required=True, help="the PNG to write")
    explain.add_argument("--num-examples", type=int, default=8)
    explain.add_argument("--split", default="test")
    explain.add_argument("--seed", type=int, default=0)
    explain.add_argument(
        "--mode",
        choices=("abs", "signed", "overlay"),
        default="abs",
        help="abs: Σ_c |a| on a sequential scale; signed: Σ_c a on a diverging scale centred "
        "at 0; overlay: the abs map over the input (default: abs)",
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="explanation metrics of a trained model, as a table and JSON",
        description="Evaluate each attribution method of a trained model with each metric on "
        "the first test examples; prints a table (mean ± std per method) and writes JSON "
        "with each metric's mean, std and count.",
    )
    evaluate.add_argument("--workdir", required=True, help="a workdir written by 'train'")
    evaluate.add_argument(
        "--methods", default="gradient,ig,smoothgrad", help="comma-separated, as for 'explain'"
    )
    evaluate.add_argument(
        "--metrics",
        default=None,
        help=_RegistryHelp(
            "comma-separated (default: all that apply), from: ",
            "jaxinterp.experiments.metric_suite.METRICS",
        ),
    )
    evaluate.add_argument("--out", required=True, help="the JSON file to write")
    evaluate.add_argument("--num-examples", type=int, default=128)
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--seed", type=int, default=0)

    reproduce = sub.add_parser(
        "reproduce",
        help="train the comparison models and report on the claims of METHODS §5",
        description="Train the study's models (standard, PGD-AT, TRADES, Hessian norm, "
        "gradient alignment, activation sensitivity) and measure each claim; writes "
        "DIR/results.json, DIR/report.md and DIR/figures/*.png. Rerunning with the same "
        "--out reuses the trained models.",
    )
    reproduce.add_argument("--out", required=True, help="output directory")
    reproduce.add_argument(
        "--config",
        default=None,
        help="a study config: reproduce_mnist5k (the default), reproduce_digits, "
        "reproduce_mnist, reproduce_cifar10, or a file",
    )
    reproduce.add_argument(
        "--quick", action="store_true", help="one seed, shorter training, fewer examples"
    )
    reproduce.add_argument("--claims", default=None, help="comma-separated ids (default: all)")

    prepare = sub.add_parser(
        "prepare",
        help="prepare a TFDS dataset (array_record) in the data dir",
        description="Prepare a dataset in array_record format. The embedded datasets "
        "(digits, digits_canvas, mnist5k, mnist_canvas) need no network; registry datasets "
        "download.",
    )
    prepare.add_argument("--dataset", required=True)
    prepare.add_argument("--data-dir", default=None, help="TFDS data dir (default: see README)")

    sub.add_parser(
        "configs",
        help="list the packaged configs that --config NAME accepts",
        description="List the packaged configs (name and the first line of its docstring); "
        "'--config NAME' of 'train' and 'reproduce' loads one from any working directory.",
    )
    return parser


def _train(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> int:
    from jaxinterp.experiments import config_io, train

    config = config_io.apply_overrides(config_io.load_config(args.config), overrides)
    # Before anything is written; train_and_evaluate validates the config first thing.
    config_io.check_output_dir("--workdir", args.workdir)
    result = train.train_and_evaluate(config, args.workdir)
    if "note" in result:  # nothing to do
        print(f"jaxinterp: {result['note']}", file=sys.stderr)
        return 0
    import jax

    if jax.process_index() == 0:
        print(
            json.dumps(
                {
                    "step": result["step"],
                    **{f"eval/{k}": round(v, 6) for k, v in result["eval"].items()},
                }
            )
        )
    return 0


def _explain(args: argparse.Namespace) -> int:
    from jaxinterp.experiments.explain import explain

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seconds = explain(
        args.workdir,
        methods,
        args.out,
        num_examples=args.num_examples,
        split=args.split,
        seed=args.seed,
        mode=args.mode,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    print(f"wrote {args.out} ({timing})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from jaxinterp.experiments.evaluate import evaluate, format_table

    result = evaluate(
        args.workdir,
        _names(args.methods),
        _names(args.metrics) if args.metrics is not None else None,
        args.out,
        num_examples=args.num_examples,
        batch_size=args.batch_size,
        split=args.split,
        seed=args.seed,
    )
    print(format_table(result["results"]))
    print(
        f"accuracy {result['accuracy']:.4f} on {result['num_examples']} examples; wrote {args.out}"
    )
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from jaxinterp.experiments import config_io
    from jaxinterp.experiments.reproduce import reproduce

    config = config_io.load_config(args.config) if args.config else None
    claims = None
    if args.claims is not None:  # "" is an empty list, refused by reproduce()
        try:
            claims = [int(c) for c in _names(args.claims)]
        except ValueError:
            raise ValueError(
                f"--claims must be comma-separated integers, got {args.claims!r}"
            ) from None
    source = f"--config {args.config}" if args.config else "the study config"
    summary = reproduce(args.out, config=config, quick=args.quick, claims=claims, source=source)
    for c in summary["claims"]:
        print(f"claim {c['id']} ({c['title']}): {c['status']}")
    print(f"wrote {os.path.join(args.out, 'report.md')}")
    return 0


def _names(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _prepare(args: argparse.Namespace) -> int:
    from jaxinterp import data

    data.prepare(args.dataset, data_dir=args.data_dir)
    print(f"prepared {args.dataset} in {args.data_dir or data.default_data_dir()}")
    return 0


def _configs() -> int:
    from jaxinterp import configs

    names = configs.names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {configs.summary(name)}")
    print(f"(files in {configs.DIRECTORY}; --config also takes a file of your own)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    rest, overrides = argv, list[tuple[str, str]]()
    if any(a.startswith("--config.") for a in argv):
        # Imported only when needed: jaxinterp.experiments imports JAX, and --help and
        # 'configs' should not wait for it.
        from jaxinterp.experiments.config_io import split_override_args

        try:
            rest, overrides = split_override_args(argv)
        except ValueError as e:
            parser.error(str(e))
    args = parser.parse_args(rest)
    if overrides and args.command != "train":
        parser.error("--config.FIELD overrides apply to 'train' only")
    if args.command == "configs":
        return _configs()
    # Before anything starts JAX: the YNNPACK fusion setting and malloc's memory reuse
    # (jaxinterp/_cpu.py); flags already in XLA_FLAGS are kept.
    from jaxinterp import configure_cpu

    configure_cpu()
    from jaxinterp.training.errors import NonFiniteError, first_line

    try:
        if args.command == "train":
            return _train(args, overrides)
        if args.command == "explain":
            return _explain(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "reproduce":
            return _reproduce(args)
        return _prepare(args)
    except NonFiniteError as e:
        print(f"jaxinterp: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, KeyError, ImportError, OSError, OverflowError) as e:
        # Expected failures: bad input, paths, permissions, a full disk (OSError covers
        # FileNotFoundError, PermissionError, NotADirectoryError, ENOSPC, ...).
        if os.environ.get("JAXINTERP_DEBUG"):
            raise
        print(f"jaxinterp: error: {first_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
