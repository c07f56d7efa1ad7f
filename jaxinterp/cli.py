"""The ``jaxinterp`` command line.

``jaxinterp train --config configs/NAME.py [--config.field=value ...] --workdir DIR``
``jaxinterp explain --workdir DIR [--methods ig,big,...] --out FILE.png``
``jaxinterp prepare --dataset NAME [--data-dir DIR]``

Bad input ends the command with exit status 2 and one line on stderr (set
``JAXINTERP_DEBUG=1`` for the traceback); a loss that became NaN/Inf ends it with status 1
(the checkpoints written before stay).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


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
    train.add_argument("--config", required=True, help="path of a configs/*.py file")
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
        help="comma-separated, from: gradient, gradient_x_input, ig, smoothgrad, vargrad, "
        "bsm, big, relex, regadv",
    )
    explain.add_argument("--out", required=True, help="the PNG to write")
    explain.add_argument("--num-examples", type=int, default=8)
    explain.add_argument("--split", default="test")
    explain.add_argument("--seed", type=int, default=0)

    prepare = sub.add_parser(
        "prepare",
        help="prepare a TFDS dataset (array_record) in the data dir",
        description="Prepare a dataset in array_record format. The embedded datasets "
        "(digits, digits_canvas) need no network; registry datasets download.",
    )
    prepare.add_argument("--dataset", required=True)
    prepare.add_argument("--data-dir", default=None, help="TFDS data dir (default: see README)")
    return parser


def _train(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> int:
    from jaxinterp.experiments import config_io, train

    config = config_io.apply_overrides(config_io.load_config(args.config), overrides)
    result = train.train_and_evaluate(config, args.workdir)
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
    )
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    print(f"wrote {args.out} ({timing})")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from jaxinterp import data

    data.prepare(args.dataset, data_dir=args.data_dir)
    print(f"prepared {args.dataset} in {args.data_dir or data.default_data_dir()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    from jaxinterp.experiments.config_io import split_override_args

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        rest, overrides = split_override_args(argv)
    except ValueError as e:
        parser.error(str(e))
    args = parser.parse_args(rest)
    if overrides and args.command != "train":
        parser.error("--config.FIELD overrides apply to 'train' only")
    from jaxinterp.training.errors import NonFiniteError

    try:
        if args.command == "train":
            return _train(args, overrides)
        if args.command == "explain":
            return _explain(args)
        return _prepare(args)
    except NonFiniteError as e:
        print(f"jaxinterp: error: {e}; stopped, the last good checkpoint is kept", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, KeyError) as e:
        if os.environ.get("JAXINTERP_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"jaxinterp: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
