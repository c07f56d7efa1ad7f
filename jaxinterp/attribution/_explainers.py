"""The canonical explainer shape, and the adapter from score-function building blocks.

The building blocks of this package take a score function, ``method(score_fn, x, ...)``
(composable: any scalar per example can be explained). Jobs, metrics and attacks use the
one explainer shape of :class:`jaxinterp.core.Explainer`::

    explain(apply_fn, params, x [B, ...], y [B], *, key=None) -> attribution like x

:func:`explainer` turns the first into the second; the factories below are what the
registry :data:`jaxinterp.attribution.EXPLAINERS` builds by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import jax

from jaxinterp import attacks
from jaxinterp.core import checks
from jaxinterp.core.protocols import ApplyFn, Explainer
from jaxinterp.core.scores import SCORES, class_score

from ._boundary import big, bsm
from ._gradient import gradient, gradient_x_input
from ._smooth import smooth

__all__ = ["boundary_explainer", "explainer", "random_map", "score_based", "smooth_explainer"]


def explainer(
    method: Callable[..., jax.Array], /, *, score: str = "logit", **kwargs: Any
) -> Explainer:
    """Adapts ``method(score_fn, x, **kwargs[, key=key])`` to the explainer shape.

    ``explain(apply_fn, params, x, y, *, key=None) = method(class_score(apply_fn, params, y,
    score), x, **kwargs)``, passing ``key`` when ``method`` takes one.

    Args:
      method: A score-function method, e.g. :func:`gradient` or ``smooth(gradient)``.
      score: The class score explained (:data:`jaxinterp.core.SCORES`).
      **kwargs: The method's hyperparameters (e.g. ``num_steps`` of integrated gradients).

    Returns:
      ``explain(apply_fn, params, x, y, *, key=None) -> attribution`` like ``x``.

    Example:
      >>> explain = explainer(integrated_gradients, num_steps=32)
      >>> a = explain(apply_fn, params, x, y)
    """
    checks.function("method", method)
    checks.one_of("score", score, SCORES)
    takes_key = "key" in inspect.signature(method).parameters

    def explain(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array | None = None
    ) -> jax.Array:
        score_fn = class_score(apply_fn, params, y, score)
        if takes_key:
            return method(score_fn, x, key=key, **kwargs)
        return method(score_fn, x, **kwargs)

    explain.__doc__ = (
        f"{getattr(method, '__name__', 'method')} of the {score} of y; see `explainer`."
    )
    return explain


def score_based(method: Callable[..., jax.Array]) -> Callable[..., Explainer]:
    """The factory ``(*, score="logit", **kwargs) -> explainer(method, score=score, **kwargs)``
    of a score-function method (what the registry holds)."""

    def factory(*, score: str = "logit", **kwargs: Any) -> Explainer:
        return explainer(method, score=score, **kwargs)

    factory.__doc__ = (inspect.getdoc(method) or "").split("\n")[0]
    factory.__name__ = getattr(method, "__name__", "factory")
    return factory


def smooth_explainer(
    *,
    base: str = "gradient",
    kind: str = "smoothgrad",
    num_samples: int = 25,
    noise_level: float = 0.15,
    chunk_size: int | None = None,
    score: str = "logit",
) -> Explainer:
    """SmoothGrad / VarGrad: :func:`smooth` of a base method over noisy copies of ``x``.

    Args:
      base: ``"gradient"`` or ``"gradient_x_input"``.
      kind, num_samples, noise_level, chunk_size: As :func:`smooth`.
      score: The class score explained.
    """
    bases = {"gradient": gradient, "gradient_x_input": gradient_x_input}
    base_fn = bases[checks.one_of("base", base, tuple(bases))]
    method = smooth(
        base_fn, num_samples=num_samples, noise_level=noise_level, kind=kind, chunk_size=chunk_size
    )
    return explainer(method, score=score)


def boundary_explainer(
    *, kind: str = "big", num_steps: int = 32, score: str = "logit", **search: Any
) -> Explainer:
    """Boundary attributions: BIG (IG from the nearest boundary point) or BSM (the gradient
    there), with the point from :func:`jaxinterp.attacks.boundary_search` ``(**search)``.

    Args:
      kind: ``"big"`` or ``"bsm"``.
      num_steps: BIG's path steps.
      score: The class score explained.
      **search: Hyperparameters of the boundary search.

    References:
      Wang, Fredrikson & Datta, "Robust Models Are More Interpretable Because Attributions
      Look Normal", ICML 2022.
    """
    checks.one_of("kind", kind, ("big", "bsm"))
    num_steps = checks.integer("num_steps", num_steps)
    find = attacks.boundary_search(**search)

    def explain(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array | None = None
    ) -> jax.Array:
        found = find(apply_fn, params, x, y, key=key)
        score_fn = class_score(apply_fn, params, y, score)
        if kind == "bsm":
            return bsm(score_fn, found.x_adv)
        # big returns (φ, δ) only with return_delta=True, which is not passed here.
        return cast(jax.Array, big(score_fn, x, found.x_adv, num_steps=num_steps))

    return explain


def random_map() -> Explainer:
    """The chance baseline: i.i.d. ``U[0, 1)`` noise shaped like ``x``, drawn from ``key``.

    It ignores the model and the input (apart from its shape). Every metric should score a
    real explanation above it: a metric on which it ties or wins (a robustness metric with
    the key held fixed rewards any input-independent map) needs a faithfulness metric beside
    it. The sanity checks of Adebayo et al. compare explanations with such maps.

    References:
      Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity checks for saliency maps",
      NeurIPS 2018.

    Returns:
      ``explain(apply_fn, params, x, y, *, key) -> [B, ...]`` like ``x``; it refuses a ``x``
      that is not a float batch ``[B, ...]`` (``B >= 1``, images channels last) like the
      other explainers, and a missing ``key``.
    """

    def explain(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array | None = None
    ) -> jax.Array:
        del apply_fn, params, y
        x = checks.array(x, image=True)
        return jax.random.uniform(checks.key(key), x.shape, x.dtype)

    return explain
