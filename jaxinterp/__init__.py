"""jaxinterp: faithful and robust explanations in JAX.

Subpackages: ``data`` (embedded TFDS datasets, batching), ``models`` (Flax models behind a
plain ``apply_fn(params, x)``), ``regularizers`` (training-time penalties), ``attacks``
(label and attribution attacks, boundary search), ``attribution`` (gradients, IG,
smoothing, RelEx, boundary attributions), ``metrics`` (explanation quality), ``training``
(pure train step, data parallelism, checkpoints) and ``experiments`` (the jobs of the
command line). ``import jaxinterp as ji`` imports none of them until first used
(``ji.attribution`` imports that subpackage), so that :func:`configure_cpu` can still set
XLA's flags before JAX starts.
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxinterp._cpu import configure_cpu, cpu_flags

__version__ = "0.1.0"

SUBPACKAGES = (
    "attacks",
    "attribution",
    "data",
    "experiments",
    "metrics",
    "models",
    "regularizers",
    "training",
)

__all__ = ["SUBPACKAGES", "__version__", "configure_cpu", "cpu_flags", *SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        return importlib.import_module(f"jaxinterp.{name}")
    raise AttributeError(f"module 'jaxinterp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBPACKAGES))
