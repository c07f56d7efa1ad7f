"""The ``kills`` group: ``jaxinterp train`` SIGKILLed at seeded moments, then resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.faults._common import (
    TRACEBACK,
    UNCLASSIFIED,
    Context,
    Run,
    _last_message,
    _metrics_problem,
    _run_keys,
    _snapshot,
    _state,
    _state_match,
    cli_outcome,
    message_lines,
    result,
    run_sub,
)

KILL_CONFIGS = ("digits_standard", "digits_lga")  # the full run alternates them
KILL_MODES = ("after a checkpoint", "during a save", "startup")
KILL_ODDS = (0.45, 0.4, 0.15)


# ----------------------------------------------------------------------------- kills


def _ckpt_view(ckpt_dir: str) -> tuple[int, list[str]]:
    """The newest complete step and the temporary (being written) entries."""
    try:
        names = os.listdir(ckpt_dir)
    except FileNotFoundError:
        return 0, []
    return max((int(n) for n in names if n.isdigit()), default=0), sorted(
        n for n in names if "tmp" in n
    )


def _tmp_step(name: str) -> int:
    m = re.match(r"(\d+)\.", name)
    return int(m.group(1)) if m else -1


def _watch(proc: subprocess.Popen, ckpt_dir: str, deadline: float) -> float | None:
    """Waits for ``proc``; returns when the first checkpoint appeared (s after start)."""
    t0, first = time.perf_counter(), None
    while proc.poll() is None:
        if time.perf_counter() > deadline:
            proc.kill()
            proc.wait()
            return first
        if first is None and _ckpt_view(ckpt_dir)[0] > 0:
            first = time.perf_counter() - t0
        time.sleep(0.01)
    return first


def _kill_at(
    proc: subprocess.Popen,
    ckpt_dir: str,
    mode: str,
    rng: np.random.Generator,
    startup_s: float,
    deadline: float,
) -> tuple[bool, str]:
    """SIGKILLs ``proc`` at the moment ``mode`` picks; ``(landed, what it interrupted)``."""
    base = _ckpt_view(ckpt_dir)[0]
    t0 = time.perf_counter()
    if mode == "startup":
        wait = float(rng.uniform(0.2, 1.0)) * startup_s
        while proc.poll() is None and time.perf_counter() - t0 < wait:
            time.sleep(0.005)
    elif mode == "after a checkpoint":
        delay = float(rng.uniform(0.0, 1.5))
        while proc.poll() is None and _ckpt_view(ckpt_dir)[0] <= base:
            if time.perf_counter() > deadline:
                break
            time.sleep(0.005)
        t1 = time.perf_counter()
        while proc.poll() is None and time.perf_counter() - t1 < delay:
            time.sleep(0.005)
    else:  # "during a save": the n-th new checkpoint being written
        n, seen = int(rng.integers(1, 4)), set()
        while proc.poll() is None and time.perf_counter() < deadline:
            latest, tmps = _ckpt_view(ckpt_dir)
            seen |= {_tmp_step(t) for t in tmps if _tmp_step(t) > base}
            if len(seen) >= n:
                break
            time.sleep(0.001)
    if proc.poll() is not None:
        return False, f"exited {proc.returncode} before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest, tmps = _ckpt_view(ckpt_dir)
    what = f"at step {latest}" + (f", while writing {', '.join(tmps)}" if tmps else "")
    return True, what


def _kills(ctx: Context) -> None:
    from tests.test_resume import OVERRIDES

    overrides = (*OVERRIDES, "--config.num_devices=1")
    flags = dict(o[len("--config.") :].split("=", 1) for o in overrides)
    num_steps, log_every = int(flags["num_steps"]), int(flags["log_every"])
    runs, per_run = (1, 2) if ctx.quick else (7, 6)
    configs = [KILL_CONFIGS[i % len(KILL_CONFIGS)] for i in range(runs)]
    refs: dict[str, tuple[Any, float, dict] | str] = {}
    for config in dict.fromkeys(configs):
        d = ctx.dir("kills", config, "reference")
        w = os.path.join(d, "w")
        t0 = time.perf_counter()
        proc = ctx.popen(ctx.train_argv(w, config, *overrides), log=os.path.join(d, "log"))
        first = _watch(proc, os.path.join(w, "checkpoints"), time.perf_counter() + ctx.timeout)
        if proc.returncode != 0:
            refs[config] = f"reference run exited {proc.returncode}"
            continue
        with open(os.path.join(w, "config.json")) as f:
            refs[config] = (_state(w), first or (time.perf_counter() - t0) / 2, json.load(f))
    for i, config in enumerate(configs):
        ref = refs[config]
        if isinstance(ref, str):
            ctx.emit(result("kills", f"{config} run {i}", UNCLASSIFIED, (), ref))
            continue
        _kill_run(
            ctx,
            config,
            i,
            overrides,
            ref,
            per_run,
            num_steps,
            log_every,
            check_resume=not ctx.quick and i < 2,
        )


def _kill_run(
    ctx: Context,
    config: str,
    index: int,
    overrides: Sequence[str],
    ref: tuple[Any, float, dict],
    per_run: int,
    num_steps: int,
    log_every: int,
    *,
    check_resume: bool,
) -> None:
    ref_params, startup_s, ref_config = ref
    rng = ctx.rng("kills", config, index)
    d = ctx.dir("kills", config, f"run{index}")
    w = os.path.join(d, "w")
    ckpt_dir = os.path.join(w, "checkpoints")
    argv = ctx.train_argv(w, config, *overrides)
    kills: list[tuple[str, str]] = []
    problems: list[str] = []
    fallbacks: list[str] = []
    t0 = time.perf_counter()
    for attempt in range(per_run * 3):
        if len(kills) >= per_run or _ckpt_view(ckpt_dir)[0] >= num_steps:
            break
        mode = str(rng.choice(KILL_MODES, p=KILL_ODDS))
        if ctx.quick:  # the two moments that matter most, one each
            mode = KILL_MODES[len(kills) % 2]
        log = os.path.join(d, f"attempt{attempt}")
        proc = ctx.popen(argv, log=log)
        landed, what = _kill_at(
            proc, ckpt_dir, mode, rng, startup_s, time.perf_counter() + ctx.timeout
        )
        with open(f"{log}.err", errors="replace") as f:
            err = f.read()
        fallbacks += [x for x in message_lines(err) if "does not read back" in x]
        if TRACEBACK in err:
            problems.append(f"attempt {attempt}: traceback: {_last_message(Run(None, err=err))}")
        if landed:
            kills.append((mode, what))
        elif proc.returncode != 0:
            problems.append(
                f"attempt {attempt} ({mode}): {what}: {_last_message(Run(None, err=err))}"
            )
            break
        else:
            break  # the run finished before the kill landed
        latest = _ckpt_view(ckpt_dir)[0]
        if check_resume and 0 < latest < num_steps:
            check_resume = False
            _emit_num_steps_check(ctx, config, index, w, argv, num_steps, ref_config)
    final = run_sub(argv, cwd=d, timeout=ctx.timeout)
    fallbacks += [x for x in message_lines(final.err) if "does not read back" in x]
    outcome, detail = _kill_verdict(
        final, problems, fallbacks, w, ref_params, ref_config, num_steps, log_every
    )
    seconds = time.perf_counter() - t0
    if not kills:
        ctx.emit(
            result(
                "kills", f"{config} run {index}: no kill landed", UNCLASSIFIED, (), detail, seconds
            )
        )
    for k, (mode, what) in enumerate(kills):
        case = f"{config} run {index} kill {k + 1}: {mode}"
        ctx.emit(
            result("kills", case, outcome, ("identical",), f"{what}; {detail}".strip("; "), seconds)
        )


def _kill_verdict(
    final: Run,
    problems: list[str],
    fallbacks: list[str],
    w: str,
    ref_params: Any,
    ref_config: dict,
    num_steps: int,
    log_every: int,
) -> tuple[str, str]:
    if problems:
        return "crash", problems[0]
    if final.rc != 0:
        return "crash", f"final run: {cli_outcome(final)}: {_last_message(final)}"
    try:
        with open(os.path.join(w, "config.json")) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        return "bad config.json", str(e)[:200]
    if saved != ref_config:
        return "bad config.json", "differs from the uninterrupted run's"
    same, why = _state_match(w, ref_params)
    if not same:
        return "differs", why
    problem = _metrics_problem(w, expected=_run_keys(num_steps, log_every))
    if problem:
        return problem
    if fallbacks:
        return "fell back after a kill", fallbacks[0]
    return "identical", ""


def _emit_num_steps_check(
    ctx: Context, config: str, index: int, w: str, argv: list[str], num_steps: int, ref_config: dict
) -> None:
    """An interrupted run restarted with more steps: refused, the workdir unchanged."""
    before = _snapshot(w)
    more = [*argv, f"--config.num_steps={num_steps + 50}"]
    run = run_sub(more, cwd=os.path.dirname(w), timeout=ctx.timeout)
    outcome = cli_outcome(run)
    if outcome == "exit 2 one line":
        if "unfinished run" not in _last_message(run):
            outcome = "exit 2 one line, other message"
        elif _snapshot(w) != before:
            outcome = "exit 2 one line, changed the workdir"
    case = f"{config} run {index}: killed run restarted with --config.num_steps={num_steps + 50}"
    ctx.emit(result("kills", case, outcome, ("exit 2 one line",), _last_message(run), run.seconds))
