"""Training-time penalties that make explanations more faithful and robust (METHODS §1).

Each factory closes over its hyperparameters and returns
``penalty(apply_fn, params, x, y, *, key) -> (scalar, diagnostics)``, differentiable
w.r.t. params, jittable and batch-local; ``impl="fast"`` uses the identities of METHODS §1.7
and ``impl="autodiff"`` the plain composition they are tested against (equal in value and
params-gradient). Each penalty defaults to the implementation that measured faster with XLA
on CPU (train step / plain step, LeNet CNN on 32×32×3, batch 128, JAX 0.10.2, 2 cores):

=========================  ======  ========  =======
penalty                    fast    autodiff  default
=========================  ======  ========  =======
input_gradient_norm        2.15    2.31      fast
gradient_alignment         3.44    3.09      autodiff
hessian_norm (1 probe)     5.34    4.12      autodiff
curvature                  6.80    3.90      autodiff
activation_sensitivity     2.09    2.06      fast (equal FLOPs)
=========================  ======  ========  =======

XLA already turns reverse-over-reverse into an efficient program that reuses the forward
residuals; the jvp identities recompute the forward with tangents, so they win only where
the reverse-over-reverse graph is the larger one. Re-measure on an accelerator with
``python -m benchmarks.regularizers``.
"""

from jaxinterp.core.registry import Registry

from ._activation_sensitivity import activation_sensitivity
from ._adversarial import adversarial_training, trades
from ._combine import Penalty, combine
from ._engine import IMPLS, SCORES, SHARED_LOGITS, input_gradient, per_example_score
from ._gradient_penalties import (
    curvature,
    gradient_alignment,
    input_gradient_norm,
)
from ._hessian import hessian_norm

PENALTIES = Registry("penalty")
"""Training penalties by name, as ``config.penalties`` names them. A factory that takes
``features_fn`` is given the model's (see ``jaxinterp train``)."""
PENALTIES.register("input_gradient_norm", input_gradient_norm, summary="double backpropagation")
PENALTIES.register("hessian_norm", hessian_norm, summary="input-Hessian Frobenius norm")
PENALTIES.register("gradient_alignment", gradient_alignment, summary="LGA: l2 + cosine")
PENALTIES.register(
    "activation_sensitivity", activation_sensitivity, summary="activation sensitivity"
)
PENALTIES.register("curvature", curvature, summary="CURE curvature")
PENALTIES.register("adversarial_training", adversarial_training, summary="PGD-AT")
PENALTIES.register("trades", trades, summary="TRADES")

__all__ = [
    "IMPLS",
    "PENALTIES",
    "SCORES",
    "SHARED_LOGITS",
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
