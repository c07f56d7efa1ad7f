"""The ``concurrency`` group: two trainers on one workdir, locks, ``explain`` while training."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.faults._common import (
    EXPLAIN,
    TINY,
    UNCLASSIFIED,
    Context,
    Run,
    _ckpt_steps,
    _last_message,
    _metrics_problem,
    _run_keys,
    _same,
    _state,
    _wrote_files,
    cli_outcome,
    result,
    run_inproc,
    run_sub,
)

# ---------------------------------------------------------------------- concurrency


def _concurrency(ctx: Context) -> None:
    steps = 150 if ctx.quick else 300
    overrides = (
        f"--config.num_steps={steps}", "--config.batch_size=32", "--config.checkpoint_every=10",
        "--config.log_every=10", "--config.keep_checkpoints=2", "--config.num_devices=1",
    )  # fmt: skip
    delays = (0.0,) if ctx.quick else (0.0, 0.0, 0.1, 0.5, 1.0, 2.0, 4.0)
    first_params: Any = None
    for i, delay in enumerate(delays):
        d = ctx.dir("concurrency", f"pair{i}")
        w = os.path.join(d, "w")
        argv = ctx.train_argv(w, "digits_standard", *overrides)
        t0 = time.perf_counter()
        a = ctx.popen(argv, log=os.path.join(d, "a"))
        time.sleep(delay)
        b = ctx.popen(argv, log=os.path.join(d, "b"))
        runs = []
        for p, name in ((a, "a"), (b, "b")):
            try:
                rc = p.wait(timeout=max(1.0, ctx.timeout - (time.perf_counter() - t0)))
                timed_out = False
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc, timed_out = None, True
            with open(os.path.join(d, f"{name}.err"), errors="replace") as f:
                runs.append(Run(rc, err=f.read(), timed_out=timed_out))
        outcome, detail = pair_outcome(runs, w, _run_keys(steps, 10))
        if outcome == "one refused":
            params = _state(w)
            if first_params is None:
                first_params = params
            elif not _same(params, first_params):
                outcome, detail = "differs", "final params differ from the first pair's"
        case = f"two trainers, the second {delay:g} s after the first"
        ctx.emit(
            result("concurrency", case, outcome, ("one refused",), detail, time.perf_counter() - t0)
        )
    _stale_lock(ctx)
    _live_lock(ctx)
    if not ctx.quick:
        _explain_while_training(ctx)


def pair_outcome(runs: Sequence[Run], w: str, expected: set[tuple[int, str]]) -> tuple[str, str]:
    """Two trainers on one workdir: ``one refused`` when one ended with exit 2 and one line
    naming the holder, the other completed, and every logged step is in metrics.jsonl once."""
    outcomes = [cli_outcome(r) for r in runs]
    refused = [
        i
        for i, r in enumerate(runs)
        if outcomes[i] == "exit 2 one line" and "in use by another trainer" in _last_message(r)
    ]
    done = [
        i for i, r in enumerate(runs) if r.rc == 0 and outcomes[i] in ("exit 0", "exit 0 one line")
    ]
    if len(refused) == 1 and len(done) == 1:
        problem = _metrics_problem(w, expected=expected)
        return problem if problem else ("one refused", _last_message(runs[refused[0]]))
    if len(done) == 2:
        trained = [any(x.startswith("step ") for x in r.err.splitlines()) for r in runs]
        if all(trained):
            return "both trained", "neither was refused"
        return UNCLASSIFIED, "no overlap: the second started after the first had finished"
    bad = [f"{o}: {_last_message(r)}" for o, r in zip(outcomes, runs, strict=True)]
    if any(o == "traceback" for o in outcomes):
        return "traceback", "; ".join(bad)
    return "crash", "; ".join(bad)


def _stale_lock(ctx: Context) -> None:
    """A lock file whose holder was SIGKILLed (tests/test_reliability.py's way) is taken over."""
    t0 = time.perf_counter()
    d = ctx.dir("concurrency", "stale")
    w = os.path.join(d, "w")
    os.makedirs(w)
    lock = os.path.join(w, ".lock")
    code = (
        f"import fcntl, os; f = open({lock!r}, 'w'); fcntl.flock(f.fileno(), fcntl.LOCK_EX); "
        "f.write('pid 999999 on host dead'); f.flush(); os.kill(os.getpid(), 9)"
    )
    died = subprocess.run([sys.executable, "-c", code], timeout=60).returncode
    run = run_inproc(ctx.train_argv(w, "digits_standard", *TINY, "--config.num_steps=2"), cwd=d)
    outcome = cli_outcome(run)
    holder = open(lock).read() if os.path.exists(lock) else ""
    if died != -9:
        outcome = UNCLASSIFIED
    elif run.rc == 0 and outcome == "exit 0":
        outcome = "taken over" if holder.startswith(f"pid {os.getpid()} ") else "lock not rewritten"
    case = "a lock left by a SIGKILLed trainer"
    detail = f"lock now: {holder.strip()}" if run.rc == 0 else _last_message(run)
    ctx.emit(
        result("concurrency", case, outcome, ("taken over",), detail, time.perf_counter() - t0)
    )


def _live_lock(ctx: Context) -> None:
    """A lock held by a live process (another open file of this one): refused, nothing written."""
    import fcntl

    t0 = time.perf_counter()
    d = ctx.dir("concurrency", "live")
    w = os.path.join(d, "w")
    os.makedirs(w)
    with open(os.path.join(w, ".lock"), "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("pid 4242 on host elsewhere\n")
        held.flush()
        run = run_inproc(ctx.train_argv(w, "digits_standard", *TINY, "--config.num_steps=2"), cwd=d)
    outcome = cli_outcome(run)
    if outcome == "exit 2 one line":
        if "pid 4242 on host elsewhere" not in _last_message(run):
            outcome = "exit 2 one line, holder not named"
        elif _wrote_files(w):
            outcome = f"exit 2 one line, wrote {_wrote_files(w)[:3]}"
    case = "a lock held by a live process"
    ctx.emit(
        result(
            "concurrency",
            case,
            outcome,
            ("exit 2 one line",),
            _last_message(run),
            time.perf_counter() - t0,
        )
    )


def _explain_while_training(ctx: Context) -> None:
    """``explain`` (child processes, one after another) while a trainer saves a checkpoint
    every 10 steps and deletes all but the last two."""
    d = ctx.dir("concurrency", "reader")
    w = os.path.join(d, "w")
    overrides = (
        "--config.num_steps=1200", "--config.batch_size=32", "--config.checkpoint_every=10",
        "--config.log_every=50", "--config.keep_checkpoints=2", "--config.num_devices=1",
    )  # fmt: skip
    proc = ctx.popen(ctx.train_argv(w, "digits_standard", *overrides), log=os.path.join(d, "t"))
    deadline = time.perf_counter() + ctx.timeout
    while proc.poll() is None and not _ckpt_steps(w) and time.perf_counter() < deadline:
        time.sleep(0.01)
    calls = 0
    while proc.poll() is None and calls < 6 and time.perf_counter() < deadline:
        png = os.path.join(d, f"maps{calls}.png")
        run = run_sub([*EXPLAIN, "--workdir", w, "--out", png], cwd=d, timeout=ctx.timeout)
        calls += 1
        case = f"explain while a trainer writes and deletes checkpoints, call {calls}"
        expect = ("exit 0", "exit 2 one line")
        detail = _last_message(run) if run.rc else (run.out.strip().splitlines() or [""])[-1]
        ctx.emit(result("concurrency", case, cli_outcome(run), expect, detail, run.seconds))
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if calls == 0:
        case = "explain while a trainer writes and deletes checkpoints"
        ctx.emit(result("concurrency", case, UNCLASSIFIED, (), "the trainer ended first"))
