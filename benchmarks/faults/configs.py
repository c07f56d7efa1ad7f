"""The ``configs`` group: bad ``train`` configs and command lines, bad ``reproduce``, ``explain``
and ``evaluate`` arguments."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence

from benchmarks.faults._common import (
    ROOT,
    TINY,
    TINY_RUN,
    UNCLASSIFIED,
    Context,
    Run,
    _ckpt_steps,
    _last_message,
    _metrics_problem,
    _run_keys,
    _snapshot,
    _state_match,
    _wrote_files,
    cli_outcome,
    result,
    run_inproc,
    run_sub,
)

# --------------------------------------------------------------------------- configs


@dataclasses.dataclass
class CliCase:
    """A command line and what it must end with.

    ``argv`` may hold ``<W>`` (a workdir inside the case directory that does not exist yet,
    unless ``setup`` makes it), ``<D>`` (the case directory), ``<DATA>``, ``<TRAINED>`` (a
    trained workdir) and ``<ROOT>`` (the checkout).
    """

    name: str
    argv: tuple[str, ...]
    expect: tuple[str, ...] = ("exit 2 one line",)
    message: str | None = None  # the message line must contain it
    subprocess: bool = False
    devices: int = 1
    timeout: float | None = None
    setup: Callable[[Context, str], None] | None = None  # (ctx, case dir)
    check: Callable[[Context, str, Run], tuple[str, str] | None] | None = None
    fresh: bool = True  # a refusal must leave nothing in <W>
    restrict: str | None = None  # a subprocess under LAUNCHER's "readonly" or "disk-full"
    quick: bool = False


def _fill(arg: str, ctx: Context, d: str) -> str:
    for token, value in (
        ("<W>", os.path.join(d, "w")),
        ("<D>", d),
        ("<DATA>", ctx.data_dir),
        ("<ROOT>", ROOT),
    ):
        arg = arg.replace(token, value)
    if "<TRAINED>" in arg:
        arg = arg.replace("<TRAINED>", ctx.trained())
    return arg


def run_case(ctx: Context, case: CliCase, group: str = "configs") -> dict:
    """Runs ``case`` (in this process unless ``case.subprocess``) and classifies it."""
    t0 = time.perf_counter()
    d = ctx.dir(group, case.name)
    try:
        if case.setup is not None:
            case.setup(ctx, d)
        argv = [_fill(a, ctx, d) for a in case.argv]
    except Exception as e:  # noqa: BLE001 - the harness, not the library
        return result(group, case.name, UNCLASSIFIED, (), f"set-up failed: {e!r}")
    w = os.path.join(d, "w")
    before = os.listdir(d)
    if case.subprocess:
        timeout = case.timeout or ctx.timeout
        run = run_sub(argv, cwd=d, timeout=timeout, devices=case.devices, restrict=case.restrict)
    else:
        run = run_inproc(argv, cwd=d)
    outcome, detail = cli_outcome(run), _last_message(run)
    if run.timed_out:
        detail = f"still running after {run.seconds:.0f} s (the value was accepted)"
        new = sorted(set(os.listdir(d)) - set(before))
        if new:
            detail += f"; it wrote {new[:4]} into its working directory"
    if outcome in case.expect:
        if case.message is not None and case.message not in detail:
            outcome = f"{outcome}, other message"
        elif case.fresh and outcome.startswith(("exit 1", "exit 2")) and _wrote_files(w):
            outcome, detail = f"{outcome}, wrote files", f"{_wrote_files(w)[:4]}; {detail}"
        elif case.check is not None:
            try:
                extra = case.check(ctx, d, run)
            except Exception as e:  # noqa: BLE001
                extra = (UNCLASSIFIED, f"check failed: {e!r}")
            if extra is not None:
                outcome, detail = extra[0], f"{extra[1]}; {detail}"
    return result(group, case.name, outcome, case.expect, detail, time.perf_counter() - t0)


def _params_of(test: Callable) -> list[tuple]:
    """The ``@pytest.mark.parametrize`` values of a test function (reused, not copied)."""
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            return [tuple(getattr(p, "values", p)) for p in mark.args[1]]
    return []


def _train(
    *overrides: str, tiny: bool = True, steps: int = 2, config: str = "digits_standard"
) -> tuple[str, ...]:
    base = ("train", "--config", config, "--workdir", "<W>", "--config.data_dir=<DATA>")
    return (*base, *(TINY if tiny else ()), f"--config.num_steps={steps}", *overrides)


def _write(name: str, text: str) -> Callable[[Context, str], None]:
    def setup(ctx: Context, d: str) -> None:
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    return setup


def _make_file(rel: str) -> Callable[[Context, str], None]:
    def setup(ctx: Context, d: str) -> None:
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        open(os.path.join(d, rel), "w").close()

    return setup


def _readonly(rel: str) -> Callable[[Context, str], None]:
    def setup(ctx: Context, d: str) -> None:
        p = os.path.join(d, rel)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, 0o555)

    return setup


def _with_tiny_run(*, drop: Sequence[int] = ()) -> Callable[[Context, str], None]:
    """Copies the TINY reference run to <W>, less the checkpoints ``drop`` (a kill after the
    last one left)."""

    def setup(ctx: Context, d: str) -> None:
        w = os.path.join(d, "w")
        shutil.copytree(ctx.tiny_ref()[0], w)
        for s in drop:
            shutil.rmtree(os.path.join(w, "checkpoints", str(s)))

    return setup


def _train_into(*overrides: str, drop: Sequence[int] = ()) -> Callable[[Context, str], None]:
    """Trains TINY with ``overrides`` into <W>, then removes the checkpoints ``drop``."""

    def setup(ctx: Context, d: str) -> None:
        w = os.path.join(d, "w")
        run = run_inproc(ctx.train_argv(w, "digits_standard", *TINY, *overrides))
        if run.rc != 0:
            raise RuntimeError(f"set-up training failed: {_last_message(run)}")
        for s in drop:
            shutil.rmtree(os.path.join(w, "checkpoints", str(s)))

    return setup


def _unchanged_since_setup(setup: Callable[[Context, str], None]) -> tuple[Callable, Callable]:
    snap: dict[str, dict[str, bytes]] = {}

    def s(ctx: Context, d: str) -> None:
        setup(ctx, d)
        snap[d] = _snapshot(os.path.join(d, "w"))

    def check(ctx: Context, d: str, run: Run) -> tuple[str, str] | None:
        after = _snapshot(os.path.join(d, "w"))
        if after != snap[d]:
            changed = sorted(k for k in set(after) | set(snap[d]) if after.get(k) != snap[d].get(k))
            return "changed the workdir", f"{changed[:4]}"
        return None

    return s, check


def _check_metrics_unique(ctx: Context, d: str, run: Run) -> tuple[str, str] | None:
    return _metrics_problem(os.path.join(d, "w"))


def _check_no_checkpoint(ctx: Context, d: str, run: Run) -> tuple[str, str] | None:
    steps = _ckpt_steps(os.path.join(d, "w"))
    return ("saved a checkpoint", f"steps {steps}") if steps else None


def _check_rerun_recovers(ctx: Context, d: str, run: Run) -> tuple[str, str] | None:
    """After the failed run, the same command without the fault ends as the reference run."""
    w = os.path.join(d, "w")
    again = run_inproc(ctx.train_argv(w, "digits_standard", *TINY_RUN), cwd=d)
    if again.rc != 0:
        return "rerun failed", f"{cli_outcome(again)}: {_last_message(again)}"
    same, why = _state_match(w, ctx.tiny_ref()[1])
    if not same:
        return "rerun differs", why
    return _metrics_problem(w, expected=_run_keys(6, 1))


def _check_nothing_in_cwd(ctx: Context, d: str, run: Run) -> tuple[str, str] | None:
    found = sorted(set(os.listdir(d)) - {"w", "study.py", "afile"})
    return ("wrote into the working directory", f"{found[:4]}") if found else None


def _check_unfinished_kept(ctx: Context, d: str, run: Run) -> tuple[str, str] | None:
    w = os.path.join(d, "w")
    saved = json.load(open(os.path.join(w, "config.json")))
    if saved["num_steps"] != 6 or _ckpt_steps(w) != [2, 4]:
        return "changed the workdir", f"num_steps {saved['num_steps']}, steps {_ckpt_steps(w)}"
    return None


# Bad --config.FIELD values on the TINY run: (overrides, what the one line must contain).
BAD_OVERRIDES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("--config.batch_size=99999999",), "is larger than the training set"),
    (("--config.learning_rate=-1.0",), "learning_rate"),
    (("--config.learning_rate=0.0",), "learning_rate"),
    (("--config.ce_weight=-1.0",), "ce_weight"),
    (("--config.weight_decay=-1.0",), "weight_decay"),
    (("--config.grad_clip_norm=-1.0",), "grad_clip_norm"),
    (("--config.optimizer=momentum", "--config.momentum=1e999"), "momentum"),
    (("--config.beta=0.0",), "beta"),
    (("--config.beta=-3.0",), "beta"),
    (("--config.schedule=warmup_cosine", "--config.warmup_steps=-1"), "warmup_steps"),
    (("--config.batch_size=0",), "batch_size"),
    (("--config.batch_size=-16",), "batch_size"),
    (("--config.eval_batch_size=0",), "eval_batch_size"),
    (("--config.num_steps=-5",), "num_steps"),
    (("--config.log_every=0",), "log_every"),
    (("--config.checkpoint_every=0",), "checkpoint_every"),
    (("--config.eval_every=-1",), "eval_every"),
    (("--config.keep_checkpoints=0",), "keep_checkpoints"),
    (("--config.num_devices=-1",), "num_devices"),
    (("--config.model_kwargs={'hidden': (0,)}",), "hidden"),
    (("--config.model_kwargs={'hidden': 'a'}",), "hidden"),
    (("--config.penalties={'g': {'penalty': 'input_gradient_norm', 'weight': -1.0}}",), "weight"),
    (("--config.penalties={'g': {'penalty': 'nope', 'weight': 1.0}}",), "nope"),
    (("--config.num_steps=2.5",), "num_steps"),
    (("--config.learning_rate=abc",), "learning_rate"),
    (("--config.seed=1.5",), "seed"),
    (("--config.tensorboard=maybe",), "tensorboard"),
    (("--config.schedule=linear",), "linear"),
    (("--config.dataset=",), "dataset"),
    (("--config.foo=1",), "--config.foo"),
    (("--config.distributed.foo=1",), "distributed.foo"),
    ((f"--config.seed={2**63}",), "seed"),
    ((f"--config.seed={2**64}",), "seed"),
    (("--config.seed=-1",), "seed"),
)
QUICK_OVERRIDES = ("--config.batch_size=99999999", "--config.foo=1", "--config.learning_rate=-1.0")
# Config files that do not load: (name, file text, what the one line must contain).
BAD_FILES = (
    ("a SyntaxError", "def get_config(:\n    pass\n", "bad.py"),
    ("a NameError", "def get_config():\n    return undefined_name\n", "bad.py"),
    ("a missing import", "import no_such_module_jaxinterp\n", "no_such_module_jaxinterp"),
    ("an error at import", "X = 1 / 0\n", "bad.py"),
    ("no get_config", "X = 1\n", "get_config"),
    ("get_config returning a dict", "def get_config():\n    return {'num_steps': 2}\n", "bad.py"),
)
EMPTY_SEEDS = (
    "from jaxinterp.experiments.config_io import load_config\n\n\ndef get_config():\n"
    "    c = load_config('reproduce_digits')\n    c.seeds = ()\n    return c\n"
)
RUN_6 = TINY_RUN[len(TINY) :]  # 6 steps, checkpoints every 2, keep 3 (with _train's TINY)


def config_cases(ctx: Context) -> list[CliCase]:
    """Every case of the ``configs`` group (``quick`` marks the quick subset)."""
    import jax

    from tests import test_cli, test_reliability

    cases: list[CliCase] = []
    # tests/test_cli.py's bad configs (on the default CNN, as there; the divisibility case
    # needs its 4 devices).
    for i, (overrides, msg) in enumerate(_params_of(test_cli.test_bad_config_ends_with_one_line)):
        devices = 4 if "4 devices" in msg else 1
        sub = devices > 1 and devices != jax.device_count()
        name = f"test_cli: {' '.join(overrides)}"
        argv = _train(*overrides, tiny=False)
        cases.append(CliCase(name, argv, message=msg, subprocess=sub, devices=devices, quick=i < 3))
    # tests/test_reliability.py's non-finite hyperparameters.
    test = test_reliability.test_non_finite_hyperparameters_are_refused
    for override, msg in _params_of(test):
        name = f"test_reliability: {override[:60]}"
        cases.append(CliCase(name, _train(override, steps=3), message=msg, quick=True))
    for overrides, msg in BAD_OVERRIDES:
        name = " ".join(o[len("--config.") :] for o in overrides)
        quick = overrides[0] in QUICK_OVERRIDES
        cases.append(CliCase(name, _train(*overrides), message=msg, quick=quick))
    cases += [
        CliCase(
            "weight_decay=1e39 (finite, overflows float32)",
            _train(
                "--config.checkpoint_every=1",
                "--config.optimizer=sgd",
                "--config.weight_decay=1e39",
                steps=3,
            ),  # fmt: skip,
            expect=("exit 1 one line",),
            message="no checkpoint was written",
            fresh=False,
            check=_check_no_checkpoint,
        ),
        CliCase("seed=2**63-1 (valid)", _train(f"--config.seed={2**63 - 1}"), expect=("exit 0",)),
        CliCase(
            "--config.num_steps without a value",
            ("train", "--config", "digits_standard", "--workdir", "<W>", "--config.num_steps"),
            message="needs a value",
            quick=True,
        ),
    ]
    train_bad = ("train", "--config", "bad.py", "--workdir", "<W>")
    for what, text, msg in BAD_FILES:
        quick = what == "a missing import"
        name = f"config file with {what}"
        cases.append(
            CliCase(name, train_bad, setup=_write("bad.py", text), message=msg, quick=quick)
        )
    cases += [
        CliCase(
            "--config README.md",
            ("train", "--config", "<ROOT>/README.md", "--workdir", "<W>"),
            message="README.md",
            quick=True,
        ),
        CliCase("--config a directory", ("train", "--config", "<D>", "--workdir", "<W>")),
        CliCase("--config ''", ("train", "--config", "", "--workdir", "<W>")),
    ]

    # Workdirs: a file, under a file, empty, read-only, on a full disk.
    def at(path: str) -> tuple[str, ...]:
        return tuple(a.replace("<W>", path) for a in _train())

    disk_full = {
        "expect": ("exit 1 one line", "exit 2 one line"),
        "subprocess": True,
        "restrict": "disk-full",
        "fresh": False,
        "check": _check_rerun_recovers,
    }
    readonly = {"subprocess": True, "restrict": "readonly"}
    cases += [
        CliCase("--workdir is a file", _train(), setup=_make_file("w"), fresh=False),
        CliCase("--workdir under a file", at("<D>/afile/w"), setup=_make_file("afile")),
        CliCase("--workdir ''", at("")),
        CliCase("read-only workdir", _train(), setup=_readonly("w"), fresh=False, **readonly),
        CliCase(
            "workdir in a read-only directory", at("<D>/ro/w"), setup=_readonly("ro"), **readonly
        ),
        CliCase(
            "disk full (files capped at 6000 bytes) on the first save", _train(*RUN_6), **disk_full
        ),
        CliCase(
            "disk full on resume (saving step 6 of a run killed after 4)",
            _train(*RUN_6),
            setup=_with_tiny_run(drop=(6,)),
            **disk_full,
        ),
    ]
    # Resume with other settings.
    setup, unchanged = _unchanged_since_setup(_with_tiny_run())
    cases += [
        CliCase(
            "resume a finished 6-step run with num_steps=4",
            _train(*RUN_6, "--config.num_steps=4"),
            expect=("exit 0 one line",),
            message="nothing changed",
            fresh=False,
            setup=setup,
            check=unchanged,
        ),
        CliCase(
            "resume an unfinished run (killed after step 4 of 6) with num_steps=8",
            _train(*RUN_6, "--config.num_steps=8"),
            message="unfinished run of num_steps=6",
            fresh=False,
            setup=_with_tiny_run(drop=(6,)),
            check=_check_unfinished_kept,
        ),
        CliCase(
            "extend a finished 6-step run to 8",
            _train(*RUN_6, "--config.num_steps=8"),
            expect=("exit 0 one line",),
            message="extending the finished 6-step run",
            fresh=False,
            setup=_with_tiny_run(),
            check=_check_metrics_unique,
        ),
        CliCase(
            "rerun a finished run with the same config",
            _train(*RUN_6),
            expect=("exit 0 one line",),
            message="already finished its 6 steps; nothing changed",
            fresh=False,
            setup=_with_tiny_run(),
            check=_check_metrics_unique,
        ),
        CliCase(
            "unfinished constant-schedule run (killed after 4 of 6) resumed with num_steps=8",
            _train("--config.schedule=constant", "--config.checkpoint_every=2", steps=8),
            expect=("exit 0",),
            fresh=False,
            setup=_train_into(
                "--config.schedule=constant",
                "--config.checkpoint_every=2",
                "--config.num_steps=6",
                drop=(6,),
            ),  # fmt: skip
            check=_check_metrics_unique,
        ),
    ]
    setup, unchanged = _unchanged_since_setup(_with_tiny_run())
    cases.append(
        CliCase(
            "resume with another learning_rate",
            _train(*RUN_6, "--config.learning_rate=0.5"),
            message="holds a run with another config",
            fresh=False,
            setup=setup,
            check=unchanged,
        )
    )
    # reproduce: in child processes (an accepted bad value starts the whole study).
    rep = {"subprocess": True, "timeout": 45.0}
    out_r = ("reproduce", "--quick", "--out", "<D>/r")
    cases += [
        CliCase('reproduce --claims ""', (*out_r, "--claims", ""), message="claims", **rep),
        CliCase("reproduce --claims a,b", (*out_r, "--claims", "a,b"), message="claims", **rep),
        CliCase("reproduce --claims 99", (*out_r, "--claims", "99"), message="99", **rep),
        CliCase(
            'reproduce --out ""',
            ("reproduce", "--quick", "--out", "", "--claims", "1"),
            check=_check_nothing_in_cwd,
            **rep,
        ),
        CliCase(
            "reproduce --out a file",
            ("reproduce", "--quick", "--out", "<D>/afile", "--claims", "1"),
            setup=_make_file("afile"),
            message="afile",
            **rep,
        ),
        CliCase(
            "reproduce --config digits_standard (a train config)",
            (*out_r, "--config", "digits_standard", "--claims", "1"),
            message="digits_standard",
            **rep,
        ),
        CliCase(
            "reproduce, a study with seeds=()",
            (*out_r, "--config", "study.py"),
            setup=_write("study.py", EMPTY_SEEDS),
            message="seeds",
            **rep,
        ),
    ]
    # explain / evaluate on a trained workdir.
    ex = ("explain", "--workdir", "<TRAINED>", "--methods", "gradient", "--num-examples", "2")
    ev = ("evaluate", "--workdir", "<TRAINED>", "--methods", "gradient", "--metrics", "gini",
          "--num-examples", "4", "--batch-size", "4")  # fmt: skip
    png, js = ("--out", "<D>/m.png"), ("--out", "<D>/e.json")
    cases += [
        CliCase(
            "explain --workdir missing", (*_set(ex, "--workdir", "<D>/gone"), *png), message="gone"
        ),
        CliCase("explain --workdir an empty directory", (*_set(ex, "--workdir", "<D>"), *png)),
        CliCase(
            "explain --workdir with no checkpoint",
            (*_set(ex, "--workdir", "<D>/w"), *png),
            setup=_write_config_only,
            fresh=False,
            message="checkpoint",
        ),
        CliCase(
            "explain --methods nope",
            (*_set(ex, "--methods", "nope"), *png),
            message="nope",
        ),
        CliCase(
            "explain --num-examples 0", (*_set(ex, "--num-examples", "0"), *png), message="num"
        ),
        CliCase(
            "explain --num-examples -1", (*_set(ex, "--num-examples", "-1"), *png), message="num"
        ),
        CliCase("explain --split nope", (*ex, "--split", "nope", *png), message="nope"),
        CliCase("explain --out an existing directory", (*ex, "--out", "<D>")),
        CliCase('explain --out ""', (*ex, "--out", "")),
        CliCase("evaluate --batch-size 0", (*_set(ev, "--batch-size", "0"), *js), message="batch"),
        CliCase(
            "evaluate --num-examples 0", (*_set(ev, "--num-examples", "0"), *js), message="num"
        ),
        CliCase("evaluate --metrics nope", (*_set(ev, "--metrics", "nope"), *js), message="nope"),
        CliCase("evaluate --methods nope", (*_set(ev, "--methods", "nope"), *js), message="nope"),
        CliCase("evaluate --out an existing directory", (*ev, "--out", "<D>")),
    ]
    return cases


def _set(args: tuple[str, ...], flag: str, value: str) -> tuple[str, ...]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return tuple(out)


def _write_config_only(ctx: Context, d: str) -> None:
    w = os.path.join(d, "w")
    os.makedirs(w)
    shutil.copy(os.path.join(ctx.trained(), "config.json"), w)


def _configs(ctx: Context) -> None:
    for case in config_cases(ctx):
        if ctx.quick and not case.quick:
            continue
        ctx.emit(run_case(ctx, case))
