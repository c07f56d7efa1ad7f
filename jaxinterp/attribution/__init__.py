"""Attributions (METHODS §3): functions of a per-example score and an input.

Every method takes ``score_fn(x [B, ...]) -> [B]`` (build one with :func:`class_score`) and
inputs ``x [B, ...]``, returns an array shaped like ``x``, batches, jits, and is
differentiable in ``x`` and in the params ``score_fn`` closes over, so explanations can be
attacked and trained through. Hyperparameters that fix shapes (``num_steps``,
``num_samples``) are Python ints; randomness is an explicit keyword-only ``key``.

Example::

    from jaxinterp import attribution

    score_fn = attribution.class_score(apply_fn, params, y)  # true-class logit, [B]
    sal = attribution.gradient(score_fn, x)
    ig, delta = attribution.integrated_gradients(score_fn, x, num_steps=32, return_delta=True)
    sg = attribution.smooth(attribution.gradient, num_samples=25)(score_fn, x, key=key)
"""

from jaxinterp.core.ops import gaussian_smoothing
from jaxinterp.core.protocols import AttributionFn, ScoreFn
from jaxinterp.core.scores import SCORES as KINDS
from jaxinterp.core.scores import class_score

from ._boundary import big, bsg, bsm
from ._gradient import gradient, gradient_x_input
from ._integrated_gradients import (
    METHODS,
    expected_integrated_gradients,
    integrated_gradients,
    quadrature,
)
from ._regularized_adversarial import (
    l1_norm,
    regularized_adversarial,
    total_variation,
)
from ._relex import relex
from ._smooth import SMOOTHINGS, smooth

# One name per line, sorted; a new module's names go in an import above and here.
__all__ = [
    "AttributionFn",
    "KINDS",
    "METHODS",
    "SMOOTHINGS",
    "ScoreFn",
    "big",
    "bsg",
    "bsm",
    "class_score",
    "expected_integrated_gradients",
    "gaussian_smoothing",
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "l1_norm",
    "quadrature",
    "regularized_adversarial",
    "relex",
    "smooth",
    "total_variation",
]
