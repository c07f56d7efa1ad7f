"""The lowest layer: the call shapes, checks and operations every subpackage shares.

* :mod:`~jaxinterp.core.protocols`: ``ApplyFn``, ``ScoreFn``, ``Explainer``, ``Attack``,
  ``Penalty``.
* :mod:`~jaxinterp.core.checks`: argument validation under one policy (``TypeError`` for a
  wrong type, ``ValueError`` for a wrong value, both naming the argument).
* :mod:`~jaxinterp.core.ops`: per-example norms and unit vectors, attribution maps, a blur,
  chunked evaluation.
* :mod:`~jaxinterp.core.losses` and :mod:`~jaxinterp.core.scores`: cross-entropy and margin,
  and the per-example class scores by name.
* :func:`gradient_steps`: the one projected signed / L2 / optax gradient-step loop.
* :class:`Registry`: methods by name.

Nothing here imports another subpackage of jaxinterp.
"""

from jaxinterp.core import checks, ops
from jaxinterp.core.ascent import DIRECTIONS, gradient_steps
from jaxinterp.core.checks import ArgumentTypeError
from jaxinterp.core.losses import LOSSES, LossFn, ce_loss, get_loss, margin_loss
from jaxinterp.core.protocols import ApplyFn, Attack, AttributionFn, Explainer, Penalty, ScoreFn
from jaxinterp.core.registry import Entry, Registry
from jaxinterp.core.scores import SCORES, class_score, per_example_score

__all__ = [
    "DIRECTIONS",
    "LOSSES",
    "SCORES",
    "ApplyFn",
    "ArgumentTypeError",
    "Attack",
    "AttributionFn",
    "Entry",
    "Explainer",
    "LossFn",
    "Penalty",
    "Registry",
    "ScoreFn",
    "ce_loss",
    "checks",
    "class_score",
    "get_loss",
    "gradient_steps",
    "margin_loss",
    "ops",
    "per_example_score",
]
