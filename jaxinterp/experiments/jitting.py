"""``jit_few_runs``: ``jax.jit`` for the programs a job runs on only a few batches.

The claims of ``jaxinterp reproduce``, the metrics of ``jaxinterp evaluate`` and the figures
of both compile many programs (hundreds in a study) and run each on a handful of batches,
so their compile time is a large share of the job. On the CPU backend these programs are
compiled with LLVM's lighter code generation (``xla_backend_optimization_level=1`` instead
of XLA's default 3). Measured on a 2-core Zen 4 (``benchmarks/README.md``): the claims of
``reproduce --quick`` 7% faster on average in alternated runs (their compiling 12% shorter),
while the study's train steps, PGD, integrated gradients and rank metrics ran as fast at
level 1 as at level 3 (same-process runs; SmoothGrad 5% slower in one). Train steps, which
run thousands of times, keep XLA's default. On a GPU or TPU nothing changes (the option is
given per program, not as an ``XLA_FLAGS`` flag, which would also set the GPU backend's).

For the same reason their attacks that run later rounds on the examples still to do (APGD-T's
targets, the boundary search's PGD ladder) compile the whole batch alone
(:data:`FEW_RUNS_SUB_BATCH_FRACTIONS`) instead of one copy of the attack per sub-batch size:
on the study's CNN (60 examples) the robust-accuracy program compiled in 5.0 against
10.3-12.1 s and the boundary normals in 6.2 against 10.4-11.5 s, with the same run times
within the noise (2-core Zen 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["FEW_RUNS_CPU_OPTIONS", "FEW_RUNS_SUB_BATCH_FRACTIONS", "jit_few_runs"]

FEW_RUNS_CPU_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 1}
"""The XLA compile options :func:`jit_few_runs` uses on the CPU backend."""

FEW_RUNS_SUB_BATCH_FRACTIONS: tuple[int, ...] = (1,)
"""``sub_batch_fractions`` of the attacks in programs run a few times: the whole batch alone
(:data:`jaxinterp.attacks.SUB_BATCH_FRACTIONS` is the library's default)."""


def jit_few_runs(fn: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fn, **jit_kwargs)``, compiled with :data:`FEW_RUNS_CPU_OPTIONS` when the
    default backend is the CPU (decided when called, which starts JAX's backend).

    Args:
      fn: The function to jit.
      **jit_kwargs: Passed to ``jax.jit`` (``compiler_options`` given here are kept and take
        precedence).

    Returns:
      The jitted function.
    """
    if jax.default_backend() == "cpu":
        jit_kwargs["compiler_options"] = FEW_RUNS_CPU_OPTIONS | dict(
            jit_kwargs.get("compiler_options") or {}
        )
    return jax.jit(fn, **jit_kwargs)
