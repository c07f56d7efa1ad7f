"""What the fault groups share: outcomes, running the CLI, the context, state checks."""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from benchmarks._timing import RowPrinter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNCLASSIFIED = "unclassified"
TRACEBACK = "Traceback (most recent call last)"
# The small run of tests/test_reliability.py (MLP 16, batch 16, one device, log every step).
TINY = (
    "--config.model=mlp", "--config.model_kwargs={'hidden': (16,)}", "--config.batch_size=16",
    "--config.eval_batch_size=16", "--config.num_devices=1", "--config.log_every=1",
)  # fmt: skip
EXPLAIN = ("explain", "--methods", "gradient", "--num-examples", "2")


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


def _emit_aggregate(ctx: Context, group: str, name: str, cases: list[dict], seconds: float) -> None:
    """Prints one row for ``cases`` (their outcome counts) and records every case."""
    counts = collections.Counter(r["outcome"] for r in cases)
    failed = [r for r in cases if not r["ok"]]
    outcomes = ", ".join(f"{n} {k}" for k, n in counts.most_common())
    detail = failed[0]["detail"] if failed else ""
    row = result(group, f"{name} ({len(cases)} cases)", outcomes, (), detail, seconds)
    row["ok"] = not failed
    ctx.emit(row, cases=cases)


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
