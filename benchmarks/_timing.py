"""Honest timing: compile separately, warm up, block, take the median of repeats."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["compile_and_time", "machine", "report"]


def compile_and_time(
    fn: Callable, *args: Any, repeats: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Lowers and compiles ``jax.jit(fn)`` for ``args``, then times calls of the executable.

    ``fn`` must not donate its arguments (the same ``args`` are reused).

    Returns:
      ``compile_s``, ``median_s``, ``min_s`` over ``repeats`` calls after ``warmup`` calls,
      and ``temp_bytes`` (the compiled program's temporary memory, from
      ``compiled.memory_analysis()``, or -1 where the backend does not report it).
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", -1) if mem is not None else -1
    return {
        "compile_s": compile_s,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "temp_bytes": int(temp),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    dev = jax.devices()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
    }


def report(rows: list[dict], columns: dict[str, Callable[[dict], str]], json_path: str | None):
    """Prints ``rows`` as a Markdown table and the machine; writes both as JSON if asked.

    Args:
      columns: header -> formatter of a row.
    """
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(fmt(r) for fmt in columns.values()) + " |")
    info = machine()
    print(f"\n{info}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": info, "results": rows}, f, indent=2)
