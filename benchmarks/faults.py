"""The fault table of issue 13, re-run: kills, corruptions, concurrency, bad configs and bad
library inputs, each case classified into one named outcome and counted.

``python -m benchmarks.faults [--quick] [--seed N] [--groups kills,corruptions,...] [--json FILE]``

Groups (``--quick`` runs a few cases of each):

* ``kills``: ``jaxinterp train`` of a packaged digits config (tests/test_resume.py's
  overrides, one device) in a child process, SIGKILLed at seeded random moments (a random
  delay after a new checkpoint appears, while a checkpoint directory is being written, or
  during start-up), restarted and killed again, then run to the end. Every kill of a run
  gets the run's outcome: ``identical`` (final params bit-for-bit those of one uninterrupted
  run of the config, every logged step in ``metrics.jsonl`` once, ``config.json`` intact) or
  ``differs`` / ``lost metrics`` / ``duplicated metrics`` / ``crash`` / ``bad config.json``
  / ``fell back after a kill`` (a kill left a checkpoint that does not read back).
* ``corruptions``: a finished run's workdir copied per case, its latest checkpoint (or
  ``config.json``, ``metrics.jsonl``) damaged, then ``train`` (resume) and ``explain`` run
  on it: ``fell back`` (one line, the bad checkpoint moved aside, the final params those of
  the undamaged run), ``fell back, read-only`` (``explain``: one line naming the step it
  used, the workdir left as it was; that step's params are not compared), ``refused``
  (exit 2, one line naming the workdir or file), ``intact,
  used`` (what was damaged does not change the state read back; for ``explain``, the
  params), or ``silent`` / ``traceback`` and the other failures; then single-byte flips
  at seeded offsets of the data files, each read back as ``train`` reads it
  (``detected`` / ``intact, used`` / ``silent``).
* ``concurrency``: two trainers started on one workdir at several offsets (``one refused``:
  one exits 2 naming the holder, the other completes with every logged step once); a lock
  left by a SIGKILLed holder or held by a live one; ``explain`` while a trainer writes and
  deletes checkpoints.
* ``configs``: bad ``train`` configs and command lines (the lists of tests/test_cli.py and
  tests/test_reliability.py, imported, and more: negative or non-finite hyperparameters,
  seeds >= 2**63, config files that fail to import, workdirs that are files, read-only or
  on a full disk, resume with other ``num_steps``, bad ``reproduce``, ``explain`` and
  ``evaluate`` arguments): ``exit 2 one line`` (and nothing written), the expected exit 0/1
  for the few valid cases, else ``traceback``, ``exit 0``, ``exit 1``, ...
* ``library``: every explainer, attack, penalty and public metric on the fuzzed cases of
  tests/test_fuzz.py (its hypothesis strategy, seeded, ``--fuzz-scale`` times as many
  examples as the test suite draws), the NaN-attribution cases of tests/test_bad_input.py
  and a few argument cases (``key=None``, ``k=0``, labels out of range under ``jit``):
  ``finite result of the right shape``, ``error naming the argument`` or ``NaN where
  required`` pass; ``silent wrong answer``, ``valid input refused``, ``error not naming the
  argument``, ``wrong shape``, ``non-finite result``, ``other error`` fail.

A case the script cannot classify is ``unclassified``, never a pass. Rows are printed as
measured (one per function for ``library``), then per group ``count -> outcome counts``,
and every failed case. ``--json FILE`` writes ``{"machine", "settings", "summary",
"failures", "results"}``; the exit status is 1 when a case failed. Every child process has
a timeout, and every file is written under one temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from benchmarks._timing import RowPrinter

__all__ = [
    "CliCase",
    "Run",
    "cli_outcome",
    "fuzz_outcome",
    "main",
    "message_lines",
    "nan_outcome",
    "result",
    "summarize",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = ("kills", "corruptions", "concurrency", "configs", "library")
UNCLASSIFIED = "unclassified"
TRACEBACK = "Traceback (most recent call last)"
# The small run of tests/test_reliability.py (MLP 16, batch 16, one device, log every step).
TINY = (
    "--config.model=mlp", "--config.model_kwargs={'hidden': (16,)}", "--config.batch_size=16",
    "--config.eval_batch_size=16", "--config.num_devices=1", "--config.log_every=1",
)  # fmt: skip
KILL_CONFIGS = ("digits_standard", "digits_lga")  # the full run alternates them
KILL_MODES = ("after a checkpoint", "during a save", "startup")
KILL_ODDS = (0.45, 0.4, 0.15)
LIBRARY_PASS = (
    "finite result of the right shape",
    "error naming the argument",
    "NaN where required",
)


# ----------------------------------------------------------------------------- outcomes


def result(
    group: str,
    case: str,
    outcome: str,
    expect: Sequence[str],
    detail: str = "",
    seconds: float = 0.0,
    **extra: Any,
) -> dict[str, Any]:
    """One case: ``ok`` when ``outcome`` is one of ``expect`` (never when unclassified)."""
    return {
        "group": group,
        "case": case,
        "outcome": outcome,
        "ok": outcome in expect and outcome != UNCLASSIFIED,
        "detail": detail[:300],
        "seconds": round(float(seconds), 2),
        **extra,
    }


def summarize(results: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Per group: the case count, outcome -> count (failed outcomes marked), the failures,
    and per library family the same counts."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        g = out.setdefault(r["group"], {"count": 0, "outcomes": {}, "failed": 0, "families": {}})
        g["count"] += 1
        key = r["outcome"] if r["ok"] else f"{r['outcome']} (FAIL)"
        g["outcomes"][key] = g["outcomes"].get(key, 0) + 1
        g["failed"] += not r["ok"]
        if "family" in r:
            f = g["families"].setdefault(r["family"], {"count": 0, "outcomes": {}})
            f["count"] += 1
            f["outcomes"][key] = f["outcomes"].get(key, 0) + 1
    for g in out.values():
        g["outcomes"] = dict(sorted(g["outcomes"].items(), key=lambda kv: -kv[1]))
        if not g["families"]:
            del g["families"]
    return out


def _counts(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in outcomes.items())


def print_summary(summary: dict[str, dict[str, Any]], results: Sequence[dict]) -> None:
    print("\n## Summary: count -> outcomes", flush=True)
    for group, g in summary.items():
        print(f"* {group}: {g['count']} -> {_counts(g['outcomes'])}", flush=True)
        for family, f in g.get("families", {}).items():
            print(f"  * {family}: {f['count']} -> {_counts(f['outcomes'])}", flush=True)
    failures = [r for r in results if not r["ok"]]
    print(f"\n## Failures ({len(failures)})", flush=True)
    for r in failures:
        print(f"* {r['group']} | {r['case']} | {r['outcome']} | {r['detail']}", flush=True)


# --------------------------------------------------------------------- running the CLI


@dataclasses.dataclass
class Run:
    """One ``jaxinterp`` command: exit status (``None`` if it raised or timed out), output."""

    rc: int | None
    out: str = ""
    err: str = ""
    raised: str | None = None  # an exception that escaped cli.main (in-process)
    timed_out: bool = False
    seconds: float = 0.0


# Progress and log lines: not messages. The trainer's "step n/N ..." lines, the progress
# lines of explain/evaluate/reproduce, tqdm bars, absl/glog log lines, Python warnings
# ("file:line: XWarning: ...", then the source line).
_NOISE = re.compile(
    r"^(step \d+/\d+ |explain: |[\w .-]+: (step|batch|example|call|model)s? \d+/\d+ \(|"
    r"[IWEF]\d{4} \d\d:\d\d:\d\d|(WARNING|INFO|DEBUG):absl:|\s*\d+%\|)"
)
_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")


def message_lines(err: str) -> list[str]:
    """The lines of ``err`` a user reads as messages: not blank, not progress or log lines,
    not argparse's usage lines."""
    out, skip = [], False
    for line in err.replace("\r", "\n").splitlines():
        if not line.strip():
            continue
        if line.startswith("usage: ") or _WARNING.match(line):
            skip = True
            continue
        if skip and line.startswith(" "):
            continue
        skip = False
        if not _NOISE.match(line):
            out.append(line)
    return out


LOGGED = ", after logged tracebacks"


def _logged(run: Run) -> bool:
    """Tracebacks in stderr that the command survived: threads of a dependency logged them
    and the command still ended with its own line (or exit 0)."""
    if run.raised is not None or TRACEBACK not in run.err:
        return False
    tail = [x for x in run.err.splitlines() if x.strip()]
    return run.rc == 0 or bool(tail and tail[-1].startswith("jaxinterp: "))


def cli_lines(run: Run) -> list[str]:
    """The message lines of ``run``; only the command's own (``jaxinterp: ...``) lines when
    logged tracebacks are in the way."""
    lines = message_lines(run.err)
    return [x for x in lines if x.startswith("jaxinterp: ")] if _logged(run) else lines


def cli_outcome(run: Run) -> str:
    """``exit N one line`` / ``exit N k lines`` / ``exit 0`` (no message) / ``traceback`` /
    ``timeout`` / ``killed by signal N``; ``, after logged tracebacks`` is appended when
    the command survived tracebacks that a dependency's threads printed."""
    if run.timed_out:
        return "timeout"
    if run.raised is not None or (TRACEBACK in run.err and not _logged(run)):
        return "traceback"
    if run.rc is None:
        return UNCLASSIFIED
    if run.rc < 0:
        return f"killed by signal {-run.rc}"
    n = len(cli_lines(run))
    if n == 0:
        base = f"exit {run.rc}" if run.rc == 0 else f"exit {run.rc} no message"
    else:
        base = f"exit {run.rc} one line" if n == 1 else f"exit {run.rc} {n} lines"
    return base + (LOGGED if _logged(run) else "")


# Exception lines printed by threads while a failing process shuts down: not the cause.
_SHUTDOWN_NOISE = ("RuntimeError: Event loop is closed", "ImportError: sys.meta_path is None")


def _traceback_line(err: str) -> str:
    """The exception line of the first traceback in ``err`` that is not shutdown noise."""
    found = []
    for block in err.split(TRACEBACK)[1:]:
        line = next((x for x in block.splitlines()[1:] if x.strip() and not x.startswith(" ")), "")
        found.append(line)
    real = [x for x in found if not x.startswith(_SHUTDOWN_NOISE)]
    return (real or found or [""])[0]


def _last_message(run: Run) -> str:
    if run.raised:
        return run.raised
    if TRACEBACK in run.err and not _logged(run):
        return _traceback_line(run.err)
    lines = cli_lines(run)
    if lines:
        return lines[-1]
    tail = [x for x in run.err.splitlines() if x.strip()]
    return tail[-1] if tail else ""


@contextlib.contextmanager
def _captured() -> Iterator[dict[str, str]]:
    """Python-level and fd-level stdout/stderr of the block (log lines of C++ included)."""
    box: dict[str, str] = {}
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved_fd, saved = os.dup(2), (sys.stdout, sys.stderr)
        out = _StringIO()
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = out, err
        try:
            yield box
        finally:
            err.flush()
            sys.stdout, sys.stderr = saved
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            err.seek(0)
            box["err"], box["out"] = err.read(), out.getvalue()


class _StringIO:
    """A text sink that reports not being a terminal (as a log file would)."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self) -> str:
        return "".join(self.parts)


def run_inproc(argv: Sequence[str], *, cwd: str | None = None) -> Run:
    """``jaxinterp.cli.main(argv)`` in this process, its output captured."""
    from jaxinterp import cli

    debug = os.environ.pop("JAXINTERP_DEBUG", None)
    t0 = time.perf_counter()
    rc: int | None = None
    raised = None
    try:
        with _captured() as box, contextlib.chdir(cwd or os.getcwd()):
            try:
                rc = cli.main(list(argv))
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
            except Exception as e:  # noqa: BLE001 - a traceback the user would see
                raised = "".join(traceback.format_exception_only(type(e), e)).strip()
                raised = raised.splitlines()[-1] if raised else type(e).__name__
    finally:
        if debug is not None:
            os.environ["JAXINTERP_DEBUG"] = debug
    return Run(rc, box["out"], box["err"], raised, seconds=time.perf_counter() - t0)


def _env(devices: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JAXINTERP_DEBUG", None)
    env["JAX_PLATFORMS"] = "cpu"
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    return env


# Runs ``python -m jaxinterp.cli ...`` under a restriction set before exec (no Python code
# runs between fork and exec in the JAX-threaded parent): "readonly": root loses
# CAP_DAC_OVERRIDE and CAP_FOWNER, so file modes bind it as any user (a no-op for others);
# "disk-full": no file may grow past 6000 bytes (EFBIG, as on a full disk; Python ignores
# SIGXFSZ).
LAUNCHER = """
import ctypes, os, resource, sys
mode = sys.argv[1]
if mode == "readonly" and os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 3):  # CAP_DAC_OVERRIDE, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit("launcher: prctl(PR_CAPBSET_DROP) failed: errno %d" % ctypes.get_errno())
elif mode == "disk-full":
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))
os.execv(sys.executable, [sys.executable, "-m", "jaxinterp.cli", *sys.argv[2:]])
"""


def _command(argv: Sequence[str], restrict: str | None = None) -> list[str]:
    if restrict is None:
        return [sys.executable, "-m", "jaxinterp.cli", *argv]
    return [sys.executable, "-c", LAUNCHER, restrict, *argv]


def run_sub(
    argv: Sequence[str],
    *,
    cwd: str,
    timeout: float,
    devices: int = 1,
    restrict: str | None = None,
) -> Run:
    """``python -m jaxinterp.cli argv`` in a child process (killed after ``timeout`` s),
    under ``restrict`` (see LAUNCHER)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            _command(argv, restrict),
            cwd=cwd,
            env=_env(devices),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        text = [
            s.decode(errors="replace") if isinstance(s, bytes) else (s or "")
            for s in (e.stdout, e.stderr)
        ]
        return Run(None, text[0], text[1], timed_out=True, seconds=time.perf_counter() - t0)
    return Run(p.returncode, p.stdout, p.stderr, seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------- context


_SAFE = re.compile(r"[^\w.-]+")


class Context:
    """Settings, the temporary directory, seeded RNGs, child processes, the row printer."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.data_dir = args.data_dir
        self.timeout = args.timeout
        self.root = tempfile.mkdtemp(prefix="jaxinterp-faults-")
        self.results: list[dict] = []
        self.procs: list[subprocess.Popen] = []
        self._tiny_ref: tuple[str, Any] | None = None
        self.printer = RowPrinter(
            {
                "group": lambda r: r["group"],
                "case": lambda r: r["case"],
                "outcome": lambda r: r["outcome"],
                "ok": lambda r: "ok" if r["ok"] else "FAIL",
                "detail": lambda r: r["detail"].replace("|", "/")[:160],
                "s": lambda r: f"{r['seconds']:.1f}",
            }
        )

    def rng(self, *keys: object) -> np.random.Generator:
        return np.random.default_rng([self.args.seed, *(zlib.crc32(str(k).encode()) for k in keys)])

    def dir(self, *parts: str) -> str:
        """A directory under the temporary root, one per distinct ``parts``."""
        names = [f"{_SAFE.sub('_', p)[:60]}-{zlib.crc32(p.encode()):08x}" for p in parts]
        path = os.path.join(self.root, *names)
        os.makedirs(path, exist_ok=True)
        return path

    def emit(self, r: dict, *, cases: Sequence[dict] | None = None) -> None:
        """Prints ``r``; records ``cases`` (default: ``r`` itself) for the summary."""
        self.printer.row(r)
        self.results.extend([r] if cases is None else cases)

    def popen(self, argv: Sequence[str], *, log: str, devices: int = 1) -> subprocess.Popen:
        with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
            p = subprocess.Popen(
                _command(argv), cwd=self.root, env=_env(devices), stdout=out, stderr=err
            )
        self.procs.append(p)
        return p

    def train_argv(self, workdir: str, config: str, *overrides: str) -> list[str]:
        argv = ["train", "--config", config, "--workdir", workdir]
        return [*argv, f"--config.data_dir={self.data_dir}", *overrides]

    def tiny_ref(self) -> tuple[str, Any]:
        """A finished TINY run (6 steps, checkpoints 2, 4, 6) and its whole train state (see
        ``_state``), made once."""
        if self._tiny_ref is None:
            w = os.path.join(self.dir("reference"), "tiny")
            run = run_inproc(self.train_argv(w, "digits_standard", *TINY_RUN))
            if run.rc != 0:
                raise RuntimeError(f"the reference TINY run failed: {_last_message(run)}")
            self._tiny_ref = (w, _state(w))
        return self._tiny_ref

    def trained(self) -> str:
        """A trained TINY workdir for the explain/evaluate cases."""
        return self.tiny_ref()[0]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for root, dirs, _ in os.walk(self.root):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(self.root, ignore_errors=True)


TINY_RUN = (
    *TINY,
    "--config.num_steps=6",
    "--config.checkpoint_every=2",
    "--config.keep_checkpoints=3",
)


# ------------------------------------------------------------------------ state checks


def _restore(workdir: str) -> Any:
    """The train state pytree of the latest checkpoint, read as
    ``jaxinterp.experiments.load_trained`` reads the params (checksums compared)."""
    import ml_collections

    from jaxinterp import training
    from jaxinterp.experiments.restore import state_target

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    _, target = state_target(config)
    ckpt = training.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        return ckpt.restore(target)
    finally:
        ckpt.close()


def _state(workdir: str) -> dict[str, np.ndarray]:
    """The whole train state of the latest checkpoint (params, optimizer state, step, key) as
    ``{path: array}`` (see ``_restore``)."""
    import jax

    def plain(x: Any) -> Any:
        return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    flat = jax.tree_util.tree_flatten_with_path(_restore(workdir))[0]
    return {jax.tree_util.keystr(k): np.asarray(jax.device_get(plain(x))) for k, x in flat}


def _same(a: Any, b: Any) -> bool:
    import jax

    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(map(np.asarray, la), map(np.asarray, lb), strict=True)
    )


def _state_match(workdir: str, ref: dict[str, np.ndarray], prefix: str = "") -> tuple[bool, str]:
    """Whether the latest checkpoint's train state (its entries whose path starts with
    ``prefix``: ``".params"`` for what ``explain`` uses) equals ``ref`` bit for bit."""
    try:
        got = _state(workdir)
    except Exception as e:  # noqa: BLE001 - an unreadable state is a mismatch
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        return False, f"does not load: {type(e).__name__}: {first}"
    keys = sorted(k for k in set(ref) | set(got) if k.startswith(prefix))
    bad = [k for k in keys if not _same(got.get(k), ref.get(k))]
    return (not bad), (f"{bad[0]} differs from the reference" if bad else "")


def _records(path: str) -> tuple[list[dict], int]:
    """The parsed lines of a metrics.jsonl and the count of lines that do not parse."""
    records, bad = [], 0
    if not os.path.exists(path):
        return [], 0
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return records, bad


def _keys(records: Sequence[dict]) -> list[tuple[int, str]]:
    out = []
    for r in records:
        kinds = {k.split("/", 1)[0] for k in r if "/" in k}
        out += [(int(r.get("step", -1)), kind) for kind in sorted(kinds)]
    return out


def _metrics_problem(
    workdir: str,
    *,
    expected: set[tuple[int, str]] | None = None,
    before: set[tuple[int, str]] | None = None,
    allowed_dups: set[tuple[int, str]] = frozenset(),
) -> tuple[str, str] | None:
    """``(outcome, detail)`` when metrics.jsonl has an unreadable, duplicated or missing
    logged step (``expected``: exactly these; ``before``: at least these), else ``None``."""
    records, bad = _records(os.path.join(workdir, "metrics.jsonl"))
    if bad:
        return "unreadable metrics", f"{bad} lines do not parse"
    keys = _keys(records)
    dup = sorted(k for k, n in collections.Counter(keys).items() if n > 1 and k not in allowed_dups)
    if dup:
        return "duplicated metrics", f"logged twice: {dup[:4]}"
    missing = sorted((expected or set()) - set(keys)) + sorted((before or set()) - set(keys))
    if missing:
        return "lost metrics", f"missing: {missing[:4]} ({len(missing)})"
    extra = sorted(set(keys) - expected) if expected is not None else []
    if extra:
        return "lost metrics", f"unexpected steps: {extra[:4]}"
    return None


def _run_keys(num_steps: int, log_every: int) -> set[tuple[int, str]]:
    steps = set(range(log_every, num_steps + 1, log_every)) | {num_steps}
    return {(s, "train") for s in steps} | {(num_steps, "eval")}


def _wrote_files(workdir: str) -> list[str]:
    """Files a refused command left in a workdir that did not exist (the lock aside)."""
    found = []
    for root, _, files in os.walk(workdir):
        found += [os.path.relpath(os.path.join(root, f), workdir) for f in files if f != ".lock"]
    return sorted(found)


def _snapshot(workdir: str) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(workdir):
        for f in files:
            p = os.path.join(root, f)
            if f != ".lock":
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, workdir)] = fh.read()
    return out


def _ckpt_steps(workdir: str) -> list[int]:
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


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
EXPLAIN = ("explain", "--methods", "gradient", "--num-examples", "2")


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
    code = "import sys; from benchmarks import faults; faults._sweep_child(sys.argv[1])"
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


# --------------------------------------------------------------------------- library


def fuzz_outcome(spec: Any, case: Any, fuzz: Any = None) -> tuple[str, str]:
    """One call of a tests/test_fuzz.py ``Spec`` on a fuzzed ``Case``, classified by the
    suite's property (a broken argument must raise naming it; anything else must give a
    finite result of the documented shape)."""
    if fuzz is None:
        from tests import test_fuzz as fuzz
    try:
        x, y, a = case.arrays()
        x_bad = fuzz._x_bad(spec, case)
        broken = list(spec.x_names) if x_bad else []
        if spec.labels and case.labels_bad:
            broken += spec.y_names
        outside = not x_bad and spec.domain is not None and not spec.domain(case.shape)
    except Exception as e:  # noqa: BLE001 - the harness, not the library
        return UNCLASSIFIED, f"harness: {e!r}"
    try:
        out = fuzz._call(spec, case, x, y, a)
    except (ValueError, TypeError) as e:
        message = f"{type(e).__name__}: {e}".splitlines()[0]
        allowed = broken + (list(spec.x_names) + list(spec.domain_names) if outside else [])
        if not allowed:
            return "valid input refused", f"{case}: {message}"
        if any(fuzz._names(n, message) for n in allowed):
            return "error naming the argument", ""
        return "error not naming the argument", f"{message} (broken: {allowed})"
    except Exception as e:  # noqa: BLE001 - any other exception is a failure
        return (
            "other error",
            f"{case}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
        )
    if broken:
        finite = _all_finite(spec.finite(out))
        return (
            "silent wrong answer" if finite else "NaN instead of an error"
        ), f"{case}: broken {broken}"
    try:
        spec.check(out, case.shape)
    except AssertionError as e:
        return "wrong shape", f"{case}: {e}"
    if not _all_finite(spec.finite(out)):
        return "non-finite result", f"{case}"
    return "finite result of the right shape", ""


def _all_finite(tree: Any) -> bool:
    import jax

    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(tree))


def nan_outcome(out: Any, clean: Any, leaves: Callable[[Any], list]) -> tuple[str, str]:
    """A map whose example 1 is NaN/inf: every value of example 1 must be NaN and the
    other examples as on the clean map."""
    for v, c in zip(leaves(out), leaves(clean), strict=True):
        v, c = np.asarray(v), np.asarray(c)
        if not np.all(np.isnan(v[1])):
            return "silent wrong answer", f"example 1 gave {v[1].ravel()[:3]} instead of NaN"
        if not np.allclose(v[[0, 2]], c[[0, 2]], rtol=1e-5, atol=1e-6, equal_nan=True):
            return "wrong answer for the other examples", ""
    return "NaN where required", ""


def _draw(fuzz: Any, name: str, n: int, seed: int) -> list:
    """``n`` cases of the suite's strategy, drawn by hypothesis from ``seed`` (and ``name``),
    after the suite's always-valid case."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    drawn: list = []

    @hseed(zlib.crc32(f"{seed}:{name}".encode()))
    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=fuzz.CASES)
    def draw(case: Any) -> None:
        drawn.append(case)

    draw()
    return [fuzz.VALID, *drawn]


QUICK_LIBRARY = ("gradient", "fgsm", "input_gradient_norm", "gini", "pearson")


def _library(ctx: Context) -> None:
    try:
        from tests import test_bad_input as bad
        from tests import test_fuzz as fuzz
    except ImportError as e:
        ctx.emit(result("library", "import tests.test_fuzz", UNCLASSIFIED, (), repr(e)))
        return
    specs = (
        [
            ("attribution", n, lambda n=n: fuzz._explainer_spec(n))
            for n in sorted(fuzz.EXPLAINER_SETTINGS)
        ]
        + [("attacks", n, lambda n=n: fuzz._attack_spec(n)) for n in sorted(fuzz.ATTACK_SETTINGS)]
        + [
            ("regularizers", n, lambda n=n: fuzz._penalty_spec(n))
            for n in sorted(fuzz.PENALTY_SETTINGS)
        ]
        + [("metrics", n, lambda n=n: fuzz.METRIC_SPECS[n]) for n in sorted(fuzz.METRIC_SPECS)]
    )
    scale = ctx.args.fuzz_scale if ctx.args.fuzz_scale is not None else (1 if ctx.quick else 5)
    for family, name, build in specs:
        if ctx.quick and name not in QUICK_LIBRARY:
            continue
        t0 = time.perf_counter()
        try:
            spec = build()
            cases = _draw(fuzz, name, fuzz._n(name) * scale, ctx.args.seed)
        except Exception as e:  # noqa: BLE001
            ctx.emit(
                result("library", f"{family}: {name}", UNCLASSIFIED, (), repr(e), family=family)
            )
            continue
        outs = [(fuzz_outcome(spec, c, fuzz), c) for c in cases]
        _emit_function(ctx, family, name, outs, time.perf_counter() - t0)
    for family, name, call in _extra_library_cases(bad):
        if ctx.quick and name not in ("topk_intersection(k=0)", "NaN map: gini"):
            continue
        t0 = time.perf_counter()
        try:
            outcome = call()
        except Exception as e:  # noqa: BLE001
            outcome = ("other error", f"{type(e).__name__}: {e}")
        _emit_function(ctx, family, name, [(outcome, None)], time.perf_counter() - t0)


def _emit_function(ctx: Context, family: str, name: str, outs: list, seconds: float) -> None:
    cases = [
        result("library", f"{family}: {name}: {c}" if c is not None else f"{family}: {name}",
               o, LIBRARY_PASS, d, family=family, function=name)
        for (o, d), c in outs
    ]  # fmt: skip
    _emit_aggregate(ctx, "library", f"{family}: {name}", cases, seconds)


def _emit_aggregate(ctx: Context, group: str, name: str, cases: list[dict], seconds: float) -> None:
    """Prints one row for ``cases`` (their outcome counts) and records every case."""
    counts = collections.Counter(r["outcome"] for r in cases)
    failed = [r for r in cases if not r["ok"]]
    outcomes = ", ".join(f"{n} {k}" for k, n in counts.most_common())
    detail = failed[0]["detail"] if failed else ""
    row = result(group, f"{name} ({len(cases)} cases)", outcomes, (), detail, seconds)
    row["ok"] = not failed
    ctx.emit(row, cases=cases)


def _extra_library_cases(bad: Any) -> list[tuple[str, str, Callable[[], tuple[str, str]]]]:
    """NaN attributions (tests/test_bad_input.py's tables), out-of-range labels under jit,
    ``key=None`` / ``key=0`` and ``k`` of top-k."""
    import jax
    import jax.numpy as jnp

    from jaxinterp import attacks, attribution, core, metrics, regularizers

    out: list[tuple[str, str, Callable[[], tuple[str, str]]]] = []

    def nan_case(name: str) -> tuple[str, str]:
        fn, maps = bad.NAN_CASES[name]
        jitted = bad._jit(fn)
        broken, inf = list(maps), list(maps)
        broken[-1] = maps[-1].at[(1,) + (0,) * (maps[-1].ndim - 1)].set(jnp.nan)
        inf[0] = maps[0].at[(1,) + (0,) * (maps[0].ndim - 1)].set(-jnp.inf)
        clean = jitted(*maps)
        for o in (jitted(*broken), jitted(*inf)):
            outcome = nan_outcome(o, clean, lambda t: bad._leaves(t, name))
            if outcome[0] != "NaN where required":
                return outcome
        return "NaN where required", ""

    def explain_case(name: str) -> tuple[str, str]:
        fn = bad.EXPLAIN_CASES[name]
        clean = bad._jit(lambda: fn(bad._explain_b))()
        return nan_outcome(bad._jit(lambda: fn(bad._nan_explain))(), clean, jax.tree.leaves)

    for name in sorted(bad.NAN_CASES):
        out.append(("metrics", f"NaN map: {name}", lambda name=name: nan_case(name)))
    for name in sorted(bad.EXPLAIN_CASES):
        out.append(("metrics", f"NaN explanation: {name}", lambda name=name: explain_case(name)))

    logits = jnp.array([[0.5, 1.0, 2.0], [1.0, 0.0, 0.0], [0.3, 0.2, 0.1]])
    labels = jnp.array([-1, bad.K, 1])

    def labels_case(fn: Callable) -> tuple[str, str]:
        v = np.asarray(jax.jit(fn)(logits, labels))
        if not np.all(np.isnan(v[:2])):
            return "silent wrong answer", f"labels -1, K under jit gave {v[:2]}"
        return "NaN where required", ""

    for name, fn in (("core.ce_loss", core.ce_loss), ("core.margin_loss", core.margin_loss)):
        out.append(
            ("regularizers", f"labels -1 and K under jit: {name}", lambda fn=fn: labels_case(fn))
        )

    def must_refuse(call: Callable[[], Any], arg: str) -> tuple[str, str]:
        try:
            value = call()
        except (ValueError, TypeError) as e:
            msg = f"{type(e).__name__}: {e}".splitlines()[0]
            named = re.search(rf"(?<![\w]){re.escape(arg)}(?![\w])", msg) is not None
            return (
                ("error naming the argument", "")
                if named
                else ("error not naming the argument", msg)
            )
        except Exception as e:  # noqa: BLE001
            return "other error", f"{type(e).__name__}: {e}"
        finite = _all_finite(value)
        return (
            "silent wrong answer" if finite else "NaN instead of an error"
        ), f"{arg} was accepted"

    f, p, x, y = bad.apply_fn, bad.PARAMS, bad.X, bad.Y
    m, n = bad._M, bad._N
    refusals = [
        (
            "attacks",
            "pgd key=None",
            lambda: attacks.pgd(epsilon=0.1, num_steps=1)(f, p, x, y, key=None),
            "key",
        ),
        (
            "attacks",
            "pgd key=0",
            lambda: attacks.pgd(epsilon=0.1, num_steps=1)(f, p, x, y, key=0),
            "key",
        ),
        (
            "attribution",
            "smoothgrad key=None",
            lambda: attribution.EXPLAINERS.build("smoothgrad", num_samples=2)(f, p, x, y, key=None),
            "key",
        ),
        (
            "attribution",
            "smoothgrad key=0",
            lambda: attribution.EXPLAINERS.build("smoothgrad", num_samples=2)(f, p, x, y, key=0),
            "key",
        ),
        (
            "attribution",
            "rise key=None",
            lambda: attribution.rise(attribution.class_score(f, p, y), x, key=None),
            "key",
        ),
        (
            "regularizers",
            "hessian_norm key=None",
            lambda: regularizers.hessian_norm()(f, p, x, y, key=None),
            "key",
        ),
        (
            "metrics",
            "random_perturbation_similarity key=None",
            lambda: metrics.random_perturbation_similarity(bad._explain, x, key=None),
            "key",
        ),
        ("metrics", "topk_intersection(k=0)", lambda: metrics.topk_intersection(m, n, 0), "k"),
        ("metrics", "topk_intersection(k=-1)", lambda: metrics.topk_intersection(m, n, -1), "k"),
        ("metrics", "topk_intersection(k=1.5)", lambda: metrics.topk_intersection(m, n, 1.5), "k"),
        (
            "metrics",
            "topk_intersection(k=65) of 64 pixels",
            lambda: metrics.topk_intersection(m, n, 65),
            "k",
        ),
        (
            "attribution",
            "gradient of an empty batch",
            lambda: attribution.gradient(attribution.class_score(f, p, y[:0]), x[:0]),
            "x",
        ),
        (
            "attribution",
            "gradient of uint8 images",
            lambda: attribution.gradient(
                attribution.class_score(f, p, y), (np.asarray(x) * 255).astype(np.uint8)
            ),
            "x",
        ),
        (
            "attribution",
            "gradient of NCHW images",
            lambda: attribution.gradient(
                attribution.class_score(f, p, y), jnp.full((2, 1, 5, 6), 0.5)
            ),
            "x",
        ),
    ]
    for family, name, call, arg in refusals:
        out.append((family, name, lambda call=call, arg=arg: must_refuse(call, arg)))
    return out


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


if __name__ == "__main__":
    sys.exit(1 if any(not r["ok"] for r in main()) else 0)
