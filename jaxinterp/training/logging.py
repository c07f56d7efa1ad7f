"""Run logging: one JSON line per logging step, and a progress bar on a terminal."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import tqdm

__all__ = ["MetricsWriter", "progress_bar", "write_atomic", "write_json_atomic"]


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


class MetricsWriter:
    """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl``.

    The file is only ever appended to. On resume, if it holds lines of steps after the
    restored one (written by the interrupted run after its last checkpoint) or a line cut by
    a crash, a cleaned copy is written to a temporary file and swapped in with
    ``os.replace``, so the file reads as one uninterrupted run and a kill at any moment
    leaves either the old or the cleaned file, never an empty one.
    """

    def __init__(self, path: str, *, resume_step: int = 0, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        if not enabled or not os.path.exists(path):
            return
        keep, dropped = [], False
        with open(path) as f:
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
            write_atomic(path, "".join(keep))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": int(step)}
        for k, v in metrics.items():
            v = float(v) if not isinstance(v, str) else v
            record[k] = v if not isinstance(v, float) or math.isfinite(v) else str(v)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def progress_bar(total: int, initial: int, *, enabled: bool) -> tqdm.tqdm:
    """A tqdm bar on stderr, shown only when ``enabled`` and stderr is a terminal."""
    return tqdm.tqdm(
        total=total,
        initial=initial,
        disable=not (enabled and sys.stderr.isatty()),
        dynamic_ncols=True,
        unit="step",
    )
