"""Run logging: one JSON line per logging step (and, opted in, TensorBoard event files), and a
progress bar on a terminal."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import tqdm

__all__ = [
    "MetricsWriter",
    "progress_bar",
    "tensorboard_summary_writer",
    "write_atomic",
    "write_json_atomic",
]

TENSORBOARD_INSTALL = "pip install 'jaxinterp[tensorboard]' (or pip install tensorboardX)"


def write_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file and ``os.replace``.

    A reader (or a run killed at any moment) sees the old file or the new one, never a
    partial one.
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(path: str, obj: Any, *, default: Callable[[Any], Any] | None = None) -> None:
    """``json.dump(obj, indent=2, default=default)`` to ``path`` atomically (see
    :func:`write_atomic`)."""
    write_atomic(path, json.dumps(obj, indent=2, default=default))


def tensorboard_summary_writer(what: str = "TensorBoard logging") -> type:
    """``tensorboardX.SummaryWriter``, imported on first use (an optional extra).

    Raises:
      ImportError: tensorboardX is not installed; the message starts with ``what`` and gives
        the pip command.
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(f"{what} needs tensorboardX: {TENSORBOARD_INSTALL}") from e
    return SummaryWriter


class MetricsWriter:
    """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl``.

    The file is only ever appended to. On resume, if it holds lines of steps after the
    restored one (written by the interrupted run after its last checkpoint) or a line cut by
    a crash, a cleaned copy is written to a temporary file and swapped in with
    ``os.replace``, so the file reads as one uninterrupted run and a kill at any moment
    leaves either the old or the cleaned file, never an empty one.

    With ``tensorboard_dir``, every numeric value written is also a TensorBoard scalar (tag
    = the key, step = the step; stored as float32, TensorBoard's ``simple_value``) in a new
    event file of that directory (``tensorboardX``, no TensorFlow), flushed at each
    :meth:`write`. Event files are never rewritten: a resume adds a file that starts with a
    purge marker at ``resume_step + 1``, so TensorBoard hides the events the interrupted run
    logged after the restored step, as the cleaned ``metrics.jsonl`` drops them.
    """

    def __init__(
        self,
        path: str,
        *,
        resume_step: int = 0,
        enabled: bool = True,
        tensorboard_dir: str | None = None,
    ) -> None:
        self.path = path
        self.enabled = enabled
        self._tensorboard: Any = None
        if not enabled:
            return
        summary_writer = None if tensorboard_dir is None else tensorboard_summary_writer()
        if os.path.exists(path):
            self._clean(resume_step)
        if summary_writer is not None:
            self._tensorboard = summary_writer(
                tensorboard_dir,
                purge_step=resume_step + 1,
                # Unique in the directory (its name has the second and host otherwise: a
                # resume within the same second would overwrite the earlier file) and in
                # the order TensorBoard reads the files.
                filename_suffix=f".{time.time_ns()}.{os.getpid()}",
                flush_secs=10,
            )

    def _clean(self, resume_step: int) -> None:
        keep, dropped = [], False
        with open(self.path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash
                    dropped = True
                    continue
                if record.get("step", 0) <= resume_step and line.endswith("\n"):
                    keep.append(line)
                else:
                    dropped = True
        if dropped:
            write_atomic(self.path, "".join(keep))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        """Appends one line ``{"step": step, **metrics}`` (non-finite floats as strings)."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": int(step)}
        for k, v in metrics.items():
            v = float(v) if not isinstance(v, str) else v
            record[k] = v if not isinstance(v, float) or math.isfinite(v) else str(v)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for k, v in metrics.items():
                if not isinstance(v, str):
                    self._tensorboard.add_scalar(k, float(v), int(step))
            self._tensorboard.flush()

    def close(self) -> None:
        """Flushes and closes the TensorBoard event file, if any (``metrics.jsonl`` is
        closed after every line)."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


class _Lines:
    """Progress as plain lines on stderr (a log file, CI): at most one per ``every`` seconds,
    and one when done; the part of tqdm's interface the jobs use."""

    def __init__(self, total: int, initial: int, desc: str, every: float, unit: str) -> None:
        self.total, self.n, self.desc, self.every, self.unit = total, initial, desc, every, unit
        self._start, self._initial = time.perf_counter(), initial
        self._last = self._start

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self.every or self.n >= self.total:
            self._last = now
            self._print(now)

    def _print(self, now: float) -> None:
        elapsed = now - self._start
        done = self.n - self._initial
        left = elapsed / done * (self.total - self.n) if done > 0 else float("nan")
        eta = f", ~{left:.0f}s left" if self.n < self.total and math.isfinite(left) else ""
        print(
            f"{self.desc}: {self.unit} {self.n}/{self.total} ({elapsed:.0f}s{eta})",
            file=sys.stderr,
            flush=True,
        )

    def set_postfix(self, **_: Any) -> None:
        """Ignored: the line reports counts and times only."""

    def close(self) -> None:
        """Nothing to release."""


def progress_bar(
    total: int,
    initial: int,
    *,
    enabled: bool,
    desc: str | None = None,
    every: float = 30.0,
    unit: str = "step",
) -> tqdm.tqdm | _Lines:
    """Progress on stderr when ``enabled``: a tqdm bar on a terminal; elsewhere (a log file,
    CI) plain lines ``"{desc}: {unit} n/total (elapsed, ~left)"`` at most every ``every``
    seconds and at the end when ``desc`` is given, and nothing without it (the training job
    prints its own log lines)."""
    if enabled and desc is not None and not sys.stderr.isatty():
        return _Lines(total, initial, desc, every, unit)
    return tqdm.tqdm(
        total=total,
        initial=initial,
        disable=not (enabled and sys.stderr.isatty()),
        dynamic_ncols=True,
        unit=unit,
        desc=desc,
    )
