"""Run logging: one JSON line per logging step, and a progress bar on a terminal."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import tqdm

__all__ = ["MetricsWriter", "progress_bar"]


class MetricsWriter:
    """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl``.

    On resume, lines of steps after the restored one (written by the interrupted run after
    its last checkpoint) are dropped, so the file reads as one uninterrupted run.
    """

    def __init__(self, path: str, *, resume_step: int = 0, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        if os.path.exists(path):
            keep = []
            with open(path) as f:
                for line in f:
                    try:
                        if json.loads(line).get("step", 0) <= resume_step:
                            keep.append(line if line.endswith("\n") else line + "\n")
                    except json.JSONDecodeError:  # a line cut by a crash
                        continue
            with open(path, "w") as f:
                f.writelines(keep)

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
