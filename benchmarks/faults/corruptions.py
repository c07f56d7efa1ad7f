"""The ``corruptions`` group: damaged workdirs, then ``train`` and ``explain``; 1-byte flips of
the data files, read back."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.faults._common import (
    EXPLAIN,
    LOGGED,
    ROOT,
    TINY_RUN,
    UNCLASSIFIED,
    Context,
    Run,
    _ckpt_steps,
    _emit_aggregate,
    _env,
    _keys,
    _last_message,
    _logged,
    _metrics_problem,
    _records,
    _restore,
    _same,
    _state,
    _state_match,
    cli_lines,
    cli_outcome,
    result,
    run_sub,
)

# ----------------------------------------------------------------------- corruptions


def _data_files(step_dir: str) -> list[str]:
    found = []
    for root, _, files in os.walk(step_dir):
        if os.path.basename(root) == "d":
            found += [os.path.join(root, f) for f in files]
    return sorted(found, key=lambda p: (-os.path.getsize(p), p))


def _find(step_dir: str, name: str) -> list[str]:
    return sorted(
        os.path.join(root, x)
        for root, dirs, files in os.walk(step_dir)
        for x in files + dirs
        if x == name
    )


def _truncate(path: str, size: int | None = None) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2 if size is None else size)


def _flip(path: str, rng: np.random.Generator, count: int) -> str:
    data = bytearray(open(path, "rb").read())
    offsets = sorted(
        int(o) for o in rng.choice(len(data), size=min(count, len(data)), replace=False)
    )
    for o in offsets:
        data[o] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    return f"bytes {offsets[:3]}{'...' if len(offsets) > 3 else ''} of {len(data)}"


def _remove(path: str) -> None:
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


Damage = Callable[[str, str, np.random.Generator], str]  # (workdir, step dir, rng) -> detail


def _rel(w: str, paths: Sequence[str]) -> str:
    return ", ".join(os.path.relpath(p, w) for p in paths)


def _d_truncate_largest(w: str, s: str, rng: np.random.Generator) -> str:
    f = _data_files(s)[0]
    _truncate(f)
    return f"truncated {_rel(w, [f])} to half"


def _d_truncate_all(w: str, s: str, rng: np.random.Generator) -> str:
    files = _data_files(s)
    for f in files:
        _truncate(f, 7)
    return f"truncated {len(files)} data files to 7 bytes"


def _d_flip(which: str, count: int) -> Damage:
    def damage(w: str, s: str, rng: np.random.Generator) -> str:
        files = _data_files(s)
        targets = {
            "largest": files[:1],
            "random": [files[int(rng.integers(len(files)))]],
            "all": files,
        }
        return "; ".join(f"{_rel(w, [f])}: flipped {_flip(f, rng, count)}" for f in targets[which])

    return damage


def _d_delete(name: str) -> Damage:
    def damage(w: str, s: str, rng: np.random.Generator) -> str:
        found = _find(s, name)
        for p in found:
            _remove(p)
        return f"deleted {_rel(w, found)}" if found else f"no {name} found"

    return damage


def _d_delete_path(rel: str) -> Damage:
    def damage(w: str, s: str, rng: np.random.Generator) -> str:
        p = os.path.join(s, rel)
        if not os.path.exists(p):
            return f"no {rel} found"
        _remove(p)
        return f"deleted {_rel(w, [p])}"

    return damage


def _d_empty(w: str, s: str, rng: np.random.Generator) -> str:
    shutil.rmtree(s)
    os.mkdir(s)
    return f"emptied {_rel(w, [s])}"


def _d_sums_truncate(w: str, s: str, rng: np.random.Generator) -> str:
    p = os.path.join(s, "jaxinterp_sums.json")
    _truncate(p)
    return f"truncated {_rel(w, [p])}"


def _d_sums_change(w: str, s: str, rng: np.random.Generator) -> str:
    p = os.path.join(s, "jaxinterp_sums.json")
    sums = json.load(open(p))
    key = sorted(sums)[int(rng.integers(len(sums)))]
    sums[key][0] += 1.0
    with open(p, "w") as f:
        json.dump(sums, f)
    return f"changed the checksum of {key}"


def _d_newer_partial(w: str, s: str, rng: np.random.Generator) -> str:
    step = int(os.path.basename(s)) + 2
    new = os.path.join(os.path.dirname(s), str(step))
    os.mkdir(new)
    shutil.copy(os.path.join(s, "_CHECKPOINT_METADATA"), new)
    return f"made {_rel(w, [new])} holding only _CHECKPOINT_METADATA"


def _d_leftover_tmp(w: str, s: str, rng: np.random.Generator) -> str:
    step = int(os.path.basename(s)) + 2
    tmp = os.path.join(os.path.dirname(s), f"{step}.orbax-checkpoint-tmp")
    shutil.copytree(s, tmp)
    for f in _data_files(tmp):
        _truncate(f)
    return f"left {_rel(w, [tmp])} (half-written)"


def _d_every_checkpoint(w: str, s: str, rng: np.random.Generator) -> str:
    steps = _ckpt_steps(w)
    for step in steps:
        for f in _data_files(os.path.join(w, "checkpoints", str(step))):
            _truncate(f, 7)
    return f"truncated the data of checkpoints {steps}"


def _d_config(kind: str) -> Damage:
    def damage(w: str, s: str, rng: np.random.Generator) -> str:
        p = os.path.join(w, "config.json")
        if kind == "truncate":
            _truncate(p)
        else:
            with open(p, "w") as f:
                f.write("\x00garbage")
        return f"{kind} config.json"

    return damage


def _d_metrics(where: str) -> Damage:
    def damage(w: str, s: str, rng: np.random.Generator) -> str:
        p = os.path.join(w, "metrics.jsonl")
        lines = open(p).read().splitlines(keepends=True)
        k = len(lines) - 1 if where == "last" else len(lines) // 2
        with open(p, "w") as f:
            f.write("".join(lines[:k]) + lines[k][: len(lines[k]) // 2])
        return f"cut line {k + 1} of {len(lines)} mid-line" + (
            ", dropped the rest" if where != "last" else ""
        )

    return damage


def _d_value_drift(w: str, s: str, rng: np.random.Generator) -> str:
    """One stored value changed after its checksum was written (as bit rot in a value does):
    the latest checkpoint rewritten with one entry of an Adam second moment 0.1 % larger,
    its ``jaxinterp_sums.json`` kept from before."""
    import jax

    from jaxinterp import training
    from jaxinterp.training.checkpoint import SUMS_FILE

    tree = _restore(w)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    path, leaf = next((k, x) for k, x in flat if ".nu[" in jax.tree_util.keystr(k) and x.ndim == 2)
    index = tuple(int(rng.integers(n)) for n in leaf.shape)
    changed = leaf.at[index].multiply(1.001)
    tree = jax.tree_util.tree_map_with_path(lambda k, x: changed if k == path else x, tree)
    with open(os.path.join(s, SUMS_FILE)) as f:
        sums = f.read()
    tmp = os.path.join(os.path.dirname(w), "rewrite")
    ckpt = training.Checkpointer(tmp)
    ckpt.save(int(os.path.basename(s)), tree)
    ckpt.close()
    shutil.rmtree(s)
    shutil.move(os.path.join(tmp, os.path.basename(s)), s)
    shutil.rmtree(tmp)
    with open(os.path.join(s, SUMS_FILE), "w") as f:
        f.write(sums)
    old, new = float(leaf[index]), float(changed[index])
    return (
        f"{jax.tree_util.keystr(path)}{list(index)}: {old:.6g} stored as {new:.6g}, old checksums"
    )


# name -> (damage, commands, quick)
CORRUPTIONS: dict[str, tuple[Damage, tuple[str, ...], bool]] = {
    "truncate the largest data file": (_d_truncate_largest, ("train", "explain"), True),
    "truncate every data file to 7 bytes": (_d_truncate_all, ("train", "explain"), False),
    "flip 1 byte of the largest data file": (_d_flip("largest", 1), ("train", "explain"), True),
    "flip 16 bytes of a random data file": (_d_flip("random", 16), ("train", "explain"), False),
    "flip 1 byte of every data file": (_d_flip("all", 1), ("train", "explain"), False),
    "flip 256 bytes of the largest data file": (
        _d_flip("largest", 256),
        ("train", "explain"),
        False,
    ),
    "delete _METADATA": (_d_delete("_METADATA"), ("train", "explain"), True),
    "delete default/manifest.ocdbt": (
        _d_delete_path("default/manifest.ocdbt"),
        ("train", "explain"),
        False,
    ),
    "delete ocdbt.process_0/manifest.ocdbt": (
        _d_delete_path("default/ocdbt.process_0/manifest.ocdbt"),
        ("train", "explain"),
        False,
    ),
    "delete _sharding": (_d_delete("_sharding"), ("train", "explain"), False),
    "delete array_metadatas": (_d_delete("array_metadatas"), ("train", "explain"), False),
    "delete _CHECKPOINT_METADATA": (_d_delete("_CHECKPOINT_METADATA"), ("train", "explain"), False),
    "delete commit_success.txt": (_d_delete("commit_success.txt"), ("train", "explain"), False),
    "delete the step's data (default/)": (_d_delete_path("default"), ("train", "explain"), False),
    "empty step dir": (_d_empty, ("train", "explain"), False),
    "delete jaxinterp_sums.json": (_d_delete("jaxinterp_sums.json"), ("train", "explain"), False),
    "truncate jaxinterp_sums.json": (_d_sums_truncate, ("train", "explain"), False),
    "change a checksum in jaxinterp_sums.json": (_d_sums_change, ("train", "explain"), False),
    "one stored value 0.1 % off, checksums from before": (
        _d_value_drift,
        ("train", "explain"),
        True,
    ),
    "a newer step dir holding only _CHECKPOINT_METADATA": (
        _d_newer_partial,
        ("train", "explain"),
        False,
    ),
    "a left-over .orbax-checkpoint-tmp dir": (_d_leftover_tmp, ("train", "explain"), False),
    "every checkpoint's data truncated": (_d_every_checkpoint, ("train", "explain"), False),
    "truncate config.json": (_d_config("truncate"), ("train", "explain"), False),
    "config.json not JSON": (_d_config("garbage"), ("train", "explain"), False),
    "cut metrics.jsonl's last line mid-line": (_d_metrics("last"), ("train",), True),
    "cut metrics.jsonl mid-file": (_d_metrics("middle"), ("train",), False),
}
CORRUPTION_PASS = ("fell back", "fell back, read-only", "refused", "intact, used", "detected")


def _no_damage(w: str, s: str, rng: np.random.Generator) -> str:
    return "no damage"


def _corruptions(ctx: Context) -> None:
    """Each damage on a fresh copy of the TINY reference run, then ``train`` / ``explain``;
    first on an undamaged copy (the control: what the command does to a whole workdir)."""
    base, ref = ctx.tiny_ref()
    latest = _ckpt_steps(base)[-1]
    table = {"no damage (control)": (_no_damage, ("train", "explain"), True), **CORRUPTIONS}
    control_dups: dict[str, set[tuple[int, str]]] = {}
    for name, (damage, commands, quick) in table.items():
        if ctx.quick and not quick:
            continue
        for command in commands:
            t0 = time.perf_counter()
            case = f"{command}: {name}"
            d = ctx.dir("corruptions", name, command)
            w = os.path.join(d, "w")
            shutil.copytree(base, w)
            try:
                what = damage(w, os.path.join(w, "checkpoints", str(latest)), ctx.rng(case))
            except Exception as e:  # noqa: BLE001 - the harness, not the library
                ctx.emit(result("corruptions", case, UNCLASSIFIED, (), f"damage failed: {e!r}"))
                continue
            before = set(_keys(_records(os.path.join(w, "metrics.jsonl"))[0]))
            # In a child process: what a user sees, orbax's threads included (in this
            # process they could print after the command returned).
            if command == "train":
                argv = ctx.train_argv(w, "digits_standard", *TINY_RUN)
            else:
                argv = [*EXPLAIN, "--workdir", w, "--out", os.path.join(d, "maps.png")]
            run = run_sub(argv, cwd=d, timeout=ctx.timeout)
            if damage is _no_damage:
                keys = _keys(_records(os.path.join(w, "metrics.jsonl"))[0])
                control_dups[command] = {k for k, n in collections.Counter(keys).items() if n > 1}
                allowed: set[tuple[int, str]] = set()
            else:
                allowed = control_dups.get(command, set())
            outcome, detail = corruption_outcome(run, command, w, ref, before, allowed)
            seconds = time.perf_counter() - t0
            detail = f"{what}; {detail}"
            # A failed case keeps the end of what the command printed, to see what went wrong.
            err = {} if outcome in CORRUPTION_PASS else {"stderr_tail": run.err[-4000:]}
            ctx.emit(result("corruptions", case, outcome, CORRUPTION_PASS, detail, seconds, **err))
    _flip_sweep(ctx, base, ref, latest)


def _flip_sweep(ctx: Context, base: str, ref: Any, latest: int) -> None:
    """Single-byte flips at seeded offsets over all the data files of the latest checkpoint,
    each on a fresh copy, read back the way ``train`` and ``explain`` read it
    (``Checkpointer.restore``; all in one child process, whose stderr, orbax's tracebacks of
    the failed reads, is dropped): ``detected`` (the read fails, so ``train`` falls back and
    ``explain`` refuses), ``intact, used`` (the state read equals the undamaged one) or
    ``silent`` (it reads back a different state)."""
    t0 = time.perf_counter()
    step = os.path.join("checkpoints", str(latest))
    files = [os.path.relpath(f, base) for f in _data_files(os.path.join(base, step))]
    sizes = np.array([os.path.getsize(os.path.join(base, f)) for f in files])
    n = min(int(sizes.sum()), 40 if ctx.quick else 300)
    rng = ctx.rng("corruptions", "flip sweep")
    flips = []
    for at in sorted(int(o) for o in rng.choice(int(sizes.sum()), size=n, replace=False)):
        i = int(np.searchsorted(np.cumsum(sizes), at, side="right"))
        flips.append((files[i], at - int(sizes[:i].sum())))
    job = os.path.join(ctx.dir("corruptions", "flip sweep"), "job.json")
    with open(job, "w") as f:
        json.dump({"base": base, "work": os.path.dirname(job), "flips": flips}, f)
    code = (
        "import sys; from benchmarks.faults.corruptions import _sweep_child; "
        "_sweep_child(sys.argv[1])"
    )
    try:
        p = subprocess.run(
            [sys.executable, "-c", code, job],
            cwd=ROOT,
            env=_env(1),
            capture_output=True,
            text=True,
            timeout=ctx.timeout,
        )
        outs = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        outs = None
    if outs is None:
        why = "the reading process timed out or failed"
        ctx.emit(result("corruptions", "restore after 1-byte flips", UNCLASSIFIED, (), why))
        return
    cases = []
    for (file, offset), (outcome, detail) in zip(flips, outs, strict=True):
        size = sizes[files.index(file)]
        what = f"byte {offset} of {os.path.basename(file)[:8]} ({size} bytes)"
        case = f"restore after flipping {what}"
        cases.append(result("corruptions", case, outcome, CORRUPTION_PASS, f"{what}: {detail}"))
    name = f"restore after 1-byte flips at {n} offsets of the data files"
    _emit_aggregate(ctx, "corruptions", name, cases, time.perf_counter() - t0)


def _sweep_child(job_path: str) -> None:
    """The reading side of ``_flip_sweep``, in its own process: prints one JSON line,
    ``[[outcome, detail], ...]`` in the order of the job's flips."""
    import jax

    jax.devices()
    with open(job_path) as f:
        job = json.load(f)
    ref = _state(job["base"])
    outs = []
    for file, offset in job["flips"]:
        w = os.path.join(job["work"], "w")
        shutil.rmtree(w, ignore_errors=True)
        shutil.copytree(job["base"], w)
        path = os.path.join(w, file)
        data = bytearray(open(path, "rb").read())
        data[offset] ^= 0xFF
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            got = _state(w)
        except Exception as e:  # noqa: BLE001 - any read failure is a detection
            outs.append(["detected", str(e).strip().splitlines()[0][:120] if str(e) else ""])
            continue
        if _same(got, ref):
            outs.append(["intact, used", ""])
            continue
        leaf = next(k for k in ref if not _same(got.get(k), ref[k]))
        a, b = ref[leaf].ravel(), np.asarray(got[leaf]).ravel()
        k = int(np.flatnonzero(a != b)[0]) if a.shape == b.shape else 0
        outs.append(
            ["silent", f"{leaf} {ref[leaf].shape}: value {k} {a[k]:.8g} read as {b[k]:.8g}"]
        )
    print(json.dumps(outs), flush=True)


def _names_it(line: str, w: str) -> bool:
    """Whether a message names the workdir, a checkpoint, or the run file that is bad."""
    return w in line or re.search(r"checkpoints? \d+|config\.json|metrics\.jsonl", line) is not None


def corruption_outcome(
    run: Run,
    command: str,
    w: str,
    ref: Any,
    before: set[tuple[int, str]],
    allowed_dups: set[tuple[int, str]] = frozenset(),
) -> tuple[str, str]:
    """Classifies ``train``/``explain`` on a damaged workdir ``w`` (see the module doc);
    ``allowed_dups``: duplicated metrics lines the same command makes on an undamaged copy
    (counted by the control case, not again here)."""
    outcome = cli_outcome(run)
    last = _last_message(run)
    if outcome in ("traceback", "timeout", UNCLASSIFIED) or outcome.startswith("killed"):
        return outcome, last
    suffix = LOGGED if _logged(run) else ""
    lines = cli_lines(run)
    if run.rc == 2:
        if len(lines) != 1:
            return f"refused, {len(lines)} lines{suffix}", " / ".join(lines[:3])
        return ("refused" if _names_it(last, w) else "refused, nothing named") + suffix, last
    if run.rc != 0:
        return outcome, last
    fell_back = [x for x in lines if "does not read back" in x]
    # train's one expected line on a finished run it read back whole (nothing to do).
    done = re.compile(r"already finished its \d+ steps; nothing changed$")
    others = [x for x in lines if x not in fell_back and not done.search(x)]
    # explain reads the params only; train resumes from the whole state.
    same, why = _state_match(w, ref, "" if command == "train" else ".params")
    metrics = None
    if command == "train":
        metrics = _metrics_problem(w, before=before, allowed_dups=allowed_dups)
    if fell_back:
        if len(fell_back) > 1 or others:
            return f"fell back, {len(lines)} lines{suffix}", " / ".join(lines[:3])
        kept = re.search(r"left in place \(a read-only job\), using step (\d+)", fell_back[0])
        if command != "train" and kept:
            # A read-only job (explain) falls back without touching the workdir: what is
            # checked is one line naming the step used, and the bad checkpoint still there.
            # The params of that earlier step are not compared (the reference holds the
            # final ones only).
            if metrics:
                return metrics
            return f"fell back, read-only{suffix}", fell_back[0]
        moved = re.search(r"moved to (\S+?),", fell_back[0])
        if not moved or not os.path.isdir(os.path.join(w, "checkpoints", moved.group(1))):
            return f"fell back, not moved aside{suffix}", fell_back[0]
        if not same:
            return f"fell back, differs{suffix}", why
        if metrics:
            return metrics
        return f"fell back{suffix}", fell_back[0]
    if not same:
        return "silent", f"exit 0 without a word; {why}"
    if metrics:
        return metrics
    if others:
        return f"intact, used, {len(others)} lines{suffix}", " / ".join(others[:3])
    what = "state" if command == "train" else "params (all explain reads)"
    return f"intact, used{suffix}", f"exit 0; the {what} read back equal the undamaged run's"
