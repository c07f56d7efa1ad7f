"""Builds the training penalty from ``config.penalties`` by name.

``config.penalties`` maps a name to a ConfigDict holding ``weight`` and the factory's
keyword arguments, e.g. ``penalties.lga = dict(weight=1.0, lambda_l2=0.01)``. The
``penalty`` field of an entry picks the factory when the entry's name is not one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_collections

from jaxinterp import regularizers

__all__ = ["build_penalty"]


def build_penalty(
    penalties: ml_collections.ConfigDict, *, context: dict[str, Any] | None = None
) -> Callable[..., Any] | None:
    """``combine`` of the configured penalties, or ``None`` when there are none.

    Args:
      penalties: name -> ConfigDict(weight=..., [penalty=registry name], **kwargs); names
        are those of :data:`jaxinterp.regularizers.PENALTIES`.
      context: values some factories need from the run (e.g. ``features_fn``), passed to a
        factory only when it takes them as keyword arguments.
    """
    context = context or {}
    named = {}
    for name, spec in penalties.items():
        spec = dict(spec)
        kind = spec.pop("penalty", name)
        if kind not in regularizers.PENALTIES:
            known = ", ".join(regularizers.PENALTIES) or "none available"
            raise ValueError(f"unknown penalty {kind!r} in config.penalties; known: {known}")
        if "weight" not in spec:
            raise ValueError(f"config.penalties.{name} needs a weight")
        weight = spec.pop("weight")
        entry = regularizers.PENALTIES.get(kind)
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        try:
            named[name] = (float(weight), entry.build(context=context, **spec))
        except TypeError as e:  # an unknown hyperparameter
            raise ValueError(f"config.penalties.{name}: {e}") from None
    return regularizers.combine(**named) if named else None
