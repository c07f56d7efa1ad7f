"""Attributions (METHODS §3): functions of a per-example score and an input.

Two shapes, one adapter between them:

* Building blocks take ``score_fn(x [B, ...]) -> [B]`` (build one with :func:`class_score`)
  and inputs ``x [B, ...]``, return an array shaped like ``x``, batch, jit, and are
  differentiable in ``x`` and in the params ``score_fn`` closes over, so explanations can be
  attacked and trained through.
* Explainers, ``explain(apply_fn, params, x, y, *, key=None) -> like x``
  (:class:`jaxinterp.core.Explainer`), are what jobs, metrics and attacks call:
  :func:`explainer` adapts a building block, :func:`relex` and
  :func:`regularized_adversarial` are explainers already, and :data:`EXPLAINERS` builds
  each by name.

Hyperparameters that fix shapes (``num_steps``, ``num_samples``) are Python ints;
randomness is an explicit keyword-only ``key``.

Example::

    from jaxinterp import attribution

    score_fn = attribution.class_score(apply_fn, params, y)  # true-class logit, [B]
    sal = attribution.gradient(score_fn, x)
    ig, delta = attribution.integrated_gradients(score_fn, x, num_steps=32, return_delta=True)
    sg = attribution.smooth(attribution.gradient, num_samples=25)(score_fn, x, key=key)
    big = attribution.EXPLAINERS.build("big")(apply_fn, params, x, y, key=key)
"""

from jaxinterp.core.ops import gaussian_smoothing
from jaxinterp.core.protocols import AttributionFn, ScoreFn
from jaxinterp.core.registry import Registry
from jaxinterp.core.scores import SCORES as KINDS
from jaxinterp.core.scores import class_score

from ._boundary import big, bsg, bsm
from ._explainers import (
    boundary_explainer,
    explainer,
    random_map,
    score_based,
    smooth_explainer,
)
from ._grad_cam import grad_cam, spatial_layers
from ._gradient import gradient, gradient_x_input
from ._integrated_gradients import (
    METHODS,
    expected_integrated_gradients,
    integrated_gradients,
    quadrature,
)
from ._perturbation import occlusion, rise
from ._regularized_adversarial import (
    l1_norm,
    regularized_adversarial,
    soft_threshold,
    total_variation,
)
from ._relex import relex
from ._smooth import SMOOTHINGS, smooth

EXPLAINERS = Registry("explainer")
"""Explainers by name: ``EXPLAINERS.build(name, **overrides) -> explain(apply_fn, params, x,
y, *, key=None)``. Tag ``differentiable``: cheap and smooth enough to be attacked."""
_D = ("differentiable",)
EXPLAINERS.register("gradient", score_based(gradient), summary="input gradient", tags=_D)
EXPLAINERS.register(
    "gradient_x_input", score_based(gradient_x_input), summary="gradient x input", tags=_D
)
EXPLAINERS.register(
    "ig", score_based(integrated_gradients), summary="integrated gradients", num_steps=32, tags=_D
)
EXPLAINERS.register(
    "smoothgrad", smooth_explainer, summary="gradient over noisy copies", num_samples=25, tags=_D
)
EXPLAINERS.register(
    "vargrad", smooth_explainer, summary="variance of the gradient over noisy copies",
    kind="vargrad", num_samples=25,
)  # fmt: skip
EXPLAINERS.register("bsm", boundary_explainer, summary="gradient at the nearest boundary point",
                    kind="bsm")  # fmt: skip
EXPLAINERS.register("big", boundary_explainer, summary="IG from the nearest boundary point",
                    kind="big", num_steps=32)  # fmt: skip
# Grad-CAM runs the model's layer_fn, not the apply_fn it is given (an attack's smooth
# surrogate, say), so it is not tagged differentiable.
EXPLAINERS.register("grad_cam", grad_cam, summary="gradient-weighted activations of the last "
                    "conv layer (needs the model's layer_fn)")  # fmt: skip
EXPLAINERS.register("grad_cam_pp", grad_cam, summary="Grad-CAM++ weights of the last conv "
                    "layer (needs the model's layer_fn)", plus=True)  # fmt: skip
EXPLAINERS.register("relex", relex, summary="RelEx mask over noisy copies")
EXPLAINERS.register("random", random_map, summary="uniform noise: the chance baseline")
EXPLAINERS.register(
    "occlusion", score_based(occlusion), summary="score drop under sliding windows",
    window=4, stride=2, chunk_size=64,
)  # fmt: skip
EXPLAINERS.register(
    "rise", score_based(rise), summary="RISE: random-mask weighted score",
    score="softmax", num_masks=500, chunk_size=100,
)  # fmt: skip
# Shoshan & Ratner: smoothed, L1/TV-penalised PGD; the plain PGD perturbation as control.
EXPLAINERS.register(
    "regadv", regularized_adversarial, summary="regularized adversarial |delta|",
    epsilon=0.1, num_steps=20, l1=0.01, tv=0.01,
)  # fmt: skip
# The continuous variant: unit-L2 steps on the logit margin, L1 as a proximal step (exact
# zeros, no tie of quantised |δ| values at the top of the map); the same λ1 and λTV.
EXPLAINERS.register(
    "regadv_l2", regularized_adversarial, summary="regularized adversarial |delta|, L2 steps",
    epsilon=1.0, num_steps=20, norm="l2", loss="margin", l1=0.01, tv=0.01, proximal_l1=True,
)  # fmt: skip
EXPLAINERS.register(
    "pgd_l2_perturbation", regularized_adversarial,
    summary="|delta| of plain L2 PGD on the margin (control of regadv_l2)",
    epsilon=1.0, num_steps=20, norm="l2", loss="margin", smoothing_sigma=None,
)  # fmt: skip
EXPLAINERS.register(
    "pgd_perturbation", regularized_adversarial, summary="|delta| of plain PGD (control)",
    epsilon=0.1, num_steps=20, smoothing_sigma=None,
)  # fmt: skip

# One name per line, sorted; a new module's names go in an import above and here.
__all__ = [
    "EXPLAINERS",
    "AttributionFn",
    "KINDS",
    "METHODS",
    "SMOOTHINGS",
    "ScoreFn",
    "big",
    "boundary_explainer",
    "bsg",
    "bsm",
    "class_score",
    "expected_integrated_gradients",
    "explainer",
    "grad_cam",
    "gaussian_smoothing",
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "l1_norm",
    "occlusion",
    "quadrature",
    "random_map",
    "regularized_adversarial",
    "relex",
    "rise",
    "score_based",
    "smooth",
    "smooth_explainer",
    "soft_threshold",
    "spatial_layers",
    "total_variation",
]
