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

__all__ = ["FACTORIES", "build_penalty"]

# name -> factory(**hyperparameters) -> penalty(apply_fn, params, x, y, *, key).
FACTORIES: dict[str, Callable[..., Any]] = {
    "input_gradient_norm": regularizers.input_gradient_norm,
    "hessian_norm": regularizers.hessian_norm,
    "gradient_alignment": regularizers.gradient_alignment,
    "activation_sensitivity": regularizers.activation_sensitivity,
    "curvature": regularizers.curvature,
    "adversarial_training": regularizers.adversarial_training,
    "trades": regularizers.trades,
}


def build_penalty(
    penalties: ml_collections.ConfigDict, *, context: dict[str, Any] | None = None
) -> Callable[..., Any] | None:
    """``combine`` of the configured penalties, or ``None`` when there are none.

    Args:
      penalties: name -> ConfigDict(weight=..., [penalty=factory name], **kwargs).
      context: values some factories need from the run (e.g. ``features_fn``), passed to a
        factory only when it names them as keyword arguments.
    """
    context = context or {}
    named = {}
    for name, spec in penalties.items():
        spec = dict(spec)
        kind = spec.pop("penalty", name)
        if kind not in FACTORIES:
            known = ", ".join(sorted(FACTORIES)) or "none available"
            raise ValueError(f"unknown penalty {kind!r} in config.penalties; known: {known}")
        if "weight" not in spec:
            raise ValueError(f"config.penalties.{name} needs a weight")
        weight = spec.pop("weight")
        factory = FACTORIES[kind]
        code = factory.__code__
        wanted = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        extra = {k: v for k, v in context.items() if k in wanted and k not in spec}
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        try:
            named[name] = (float(weight), factory(**spec, **extra))
        except TypeError as e:  # an unknown hyperparameter
            raise ValueError(f"config.penalties.{name}: {e}") from None
    return regularizers.combine(**named) if named else None
