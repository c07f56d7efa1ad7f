"""Honest timing: compile separately, warm up, block, take the median of repeats."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from jaxinterp._cpu import host_memory_reused

__all__ = [
    "Compiled",
    "RowPrinter",
    "compile_and_time",
    "compile_jit",
    "flops",
    "machine",
    "matmul_peak",
    "paired_ratio",
    "parse_ints",
    "report",
    "time_calls",
    "time_interleaved",
]


def time_calls(
    fn: Callable[[], Any],
    *,
    repeats: int,
    warmup: int,
    sync: Callable[[Any], Any] = jax.block_until_ready,
) -> dict[str, float]:
    """Times ``sync(fn())``: ``warmup`` untimed calls, then the median and min of ``repeats``.

    ``fn`` may carry state between calls (e.g. a donated train state it replaces); ``sync``
    waits for the result (``jax.block_until_ready``; the identity for eager PyTorch on CPU).
    """
    t = time_interleaved({"fn": fn}, repeats=repeats, warmup=warmup, syncs={"fn": sync})["fn"]
    return {"median_s": t["median_s"], "min_s": t["min_s"]}


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int,
    syncs: Mapping[str, Callable[[Any], Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Times several callables in alternation, for ratios a drifting machine cannot skew.

    ``warmup`` untimed calls of each, then ``repeats`` rounds that call each once, the order
    reversed every other round. On a shared 2-core CPU one program's time drifted by 15%
    within ten seconds, for every program alike; timed in separate blocks, two programs then
    meet different conditions, timed in alternation the same ones. Compare them with
    :func:`paired_ratio`.

    Args:
      calls: name -> ``fn()``; each may carry state between calls.
      syncs: name -> how to wait for that call's result (default ``jax.block_until_ready``;
        the identity for eager PyTorch on CPU).

    Returns:
      name -> ``median_s``, ``min_s`` and ``times`` (one per round, in round order).
    """
    syncs = syncs or {}
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            syncs.get(name, jax.block_until_ready)(calls[name]())
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, repeats)):
        for name in names if r % 2 == 0 else names[::-1]:
            sync = syncs.get(name, jax.block_until_ready)
            t = time.perf_counter()
            sync(calls[name]())
            times[name].append(time.perf_counter() - t)
    return {
        name: {"median_s": statistics.median(ts), "min_s": min(ts), "times": ts}
        for name, ts in times.items()
    }


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The median over rounds of ``a_r / b_r``: the time ratio of two interleaved callables
    (:func:`time_interleaved`), each round's pair measured under the same conditions."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equally long, non-empty series; got {len(a)} and {len(b)}")
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A jitted function compiled for fixed arguments (:func:`compile_jit`).

    Attributes:
      executable: The compiled program (``as_text()`` gives its optimised HLO).
      call: Runs the program on the arguments it was compiled for.
      compile_s: Seconds to lower and compile.
      temp_bytes: The program's temporary memory (``memory_analysis()``; -1 where the
        backend does not report it).
      flops: XLA's count of floating-point operations (-1 where not reported).
    """

    executable: Any
    call: Callable[[], Any]
    compile_s: float
    temp_bytes: int
    flops: float


def compile_jit(fn: Callable, *args: Any) -> Compiled:
    """Lowers and compiles ``jax.jit(fn)`` for ``args`` (which ``fn`` must not donate: every
    call reuses them)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    return Compiled(
        executable=compiled,
        call=lambda: compiled(*args),
        compile_s=compile_s,
        temp_bytes=temp_bytes(compiled),
        flops=flops(compiled),
    )


def compile_and_time(
    fn: Callable, *args: Any, repeats: int = 20, warmup: int = 3
) -> dict[str, float]:
    """:func:`compile_jit`, then times calls of the executable (:func:`time_calls`).

    Returns:
      ``compile_s``, ``median_s``, ``min_s`` over ``repeats`` calls after ``warmup`` calls,
      ``temp_bytes`` and ``flops``.
    """
    c = compile_jit(fn, *args)
    return {
        "compile_s": c.compile_s,
        **time_calls(c.call, repeats=repeats, warmup=warmup),
        "temp_bytes": c.temp_bytes,
        "flops": c.flops,
    }


def flops(compiled: Any) -> float:
    """XLA's count of floating-point operations of a compiled program (-1 if not reported)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without a cost model raise
        return -1.0
    cost = cost[0] if isinstance(cost, list | tuple) and cost else cost
    return float(cost.get("flops", -1.0)) if isinstance(cost, dict) else -1.0


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a jitted float32 ``n × n`` matmul on the default device (median time)."""
    a = jax.numpy.ones((n, n), jax.numpy.float32)
    f = jax.jit(lambda a: a @ a)
    t = time_calls(lambda: f(a), repeats=repeats, warmup=2)["median_s"]
    return 2.0 * n**3 / t


def temp_bytes(compiled: Any) -> int:
    """The temporary (scratch) memory of a compiled executable, or -1 if not reported."""
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends raise instead of returning None
        return -1
    return int(getattr(mem, "temp_size_in_bytes", -1)) if mem is not None else -1


def parse_ints(text: str) -> list[int]:
    """``"32,128"`` -> ``[32, 128]``."""
    return [int(s) for s in text.split(",") if s.strip()]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name, with its family/model numbers and widest vector unit on Linux
    (``AMD EPYC`` alone names three generations)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(
                (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in f) if v
            )
    except OSError:
        return cpu
    cpu = fields.get("model name", cpu)
    if "cpu family" in fields:
        cpu += f" (family {fields['cpu family']}, model {fields.get('model', '?')}"
        flags = fields.get("flags", "").split()
        cpu += ", AVX-512)" if "avx512f" in flags else ", AVX2)" if "avx2" in flags else ")"
    return cpu


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, JAX backend and devices, versions.

    ``torch`` (with its thread count), ``captum`` and ``torchattacks`` are included when
    already imported.
    """
    dev = jax.devices()[0]
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for dist in ("jax", "jaxlib", "flax", "optax", "numpy"):
        info[dist] = _version(dist)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    for dist in ("captum", "torchattacks"):
        if dist in sys.modules:
            info[dist] = _version(dist)
    if os.environ.get("XLA_FLAGS"):
        info["xla_flags"] = os.environ["XLA_FLAGS"]
    info["host_memory_reuse"] = host_memory_reused()
    if os.environ.get("GLIBC_TUNABLES"):
        info["glibc_tunables"] = os.environ["GLIBC_TUNABLES"]
    return info


class RowPrinter:
    """A Markdown table printed row by row, as each row is measured (flushed at once).

    Args:
      columns: header -> formatter of a row (a dict).
    """

    def __init__(self, columns: dict[str, Callable[[dict], str]]):
        self.columns = columns
        print("| " + " | ".join(columns) + " |", flush=True)
        print("|" + "---|" * len(columns), flush=True)

    def row(self, r: dict) -> None:
        """Prints one row now."""
        print("| " + " | ".join(fmt(r) for fmt in self.columns.values()) + " |", flush=True)

    def finish(
        self, rows: list[dict], json_path: str | None, *, meta: dict[str, Any] | None = None
    ) -> None:
        """Prints the machine; writes it, ``meta`` and ``rows`` as JSON if asked."""
        info = machine()
        print(f"\n{info}", flush=True)
        if json_path:
            with open(json_path, "w") as f:
                json.dump({"machine": info, **(meta or {}), "results": rows}, f, indent=2)


def report(
    rows: list[dict],
    columns: dict[str, Callable[[dict], str]],
    json_path: str | None,
    *,
    meta: dict[str, Any] | None = None,
) -> None:
    """Prints ``rows`` (already measured) as a Markdown table and the machine; writes JSON."""
    printer = RowPrinter(columns)
    for r in rows:
        printer.row(r)
    printer.finish(rows, json_path, meta=meta)
