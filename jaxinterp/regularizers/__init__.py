"""Training-time penalties that make explanations more faithful and robust (METHODS §1).

Each factory closes over its hyperparameters and returns
``penalty(apply_fn, params, x, y, *, key) -> (scalar, diagnostics)``, differentiable
w.r.t. params, jittable and batch-local; ``impl="fast"`` uses the identities of METHODS §1.7
and ``impl="autodiff"`` the plain composition they are tested against.
"""

from jaxinterp.regularizers._activation_sensitivity import activation_sensitivity
from jaxinterp.regularizers._adversarial import adversarial_training, trades
from jaxinterp.regularizers._combine import Penalty, combine
from jaxinterp.regularizers._gradient_penalties import (
    curvature,
    gradient_alignment,
    input_gradient_norm,
)
from jaxinterp.regularizers._hessian import hessian_norm
from jaxinterp.regularizers._scores import IMPLS, SCORES, input_gradient, per_example_score

__all__ = [
    "IMPLS",
    "SCORES",
    "Penalty",
    "activation_sensitivity",
    "adversarial_training",
    "combine",
    "curvature",
    "gradient_alignment",
    "hessian_norm",
    "input_gradient",
    "input_gradient_norm",
    "per_example_score",
    "trades",
]
