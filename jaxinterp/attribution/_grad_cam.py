"""Grad-CAM and Grad-CAM++: class activation maps of a convolutional layer.

Both weight the channels of one spatial layer ``A [B, h, w, K]`` by the gradient of the class
score ``S`` in it, ``g = ∂S/∂A``, and keep the positive part of the weighted sum:

* Grad-CAM: ``α_k = mean_ij g_ijk``, ``L = ReLU(Σ_k α_k A_k)``.
* Grad-CAM++: ``a_ijk = g² / (2 g² + Σ_ab A_abk · g³)`` (0 where the denominator is 0),
  ``α_k = Σ_ij a_ijk ReLU(g_ijk)``, ``L = ReLU(Σ_k α_k A_k)``: the closed form for the
  exponential of the score, ``Y = exp(S)``, whose positive per-example factor ``exp(S)`` is
  dropped since it only scales the map.

``L`` is resized to the input's ``H × W`` (``jax.image.resize``) and repeated over its
channels, so the map has the explainer shape (like ``x``). The gradient comes from the
model's ``layer_fn`` (:data:`jaxinterp.models.LayerFn`): the derivative of the logits in an
offset added to the layer, at zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.protocols import ApplyFn, Explainer
from jaxinterp.core.scores import SCORES, check_target, score_of_logits, target_labels

__all__ = ["grad_cam", "spatial_layers"]

_RESIZE = ("linear", "cubic", "nearest")


def spatial_layers(features: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the layers ``[B, h, w, K]`` among ``features``, in the model's order."""
    return tuple(name for name, a in features.items() if len(a.shape) == 4)


def _weights(g: jax.Array, a: jax.Array, plus: bool) -> jax.Array:
    """Channel weights ``α [B, K]`` from the gradient ``g``, activation ``a`` ``[B, h, w, K]``."""
    if not plus:
        return g.mean(axis=(1, 2))
    g2 = jnp.square(g)
    denom = 2.0 * g2 + a.sum(axis=(1, 2), keepdims=True) * g2 * g
    alpha = jnp.where(denom != 0, g2 / jnp.where(denom != 0, denom, 1.0), 0.0)
    return (alpha * jax.nn.relu(g)).sum(axis=(1, 2))


def grad_cam(
    *,
    layer_fn: Any = None,
    layer: str | None = None,
    plus: bool = False,
    score: str = "logit",
    resize: str = "linear",
) -> Explainer:
    """Grad-CAM (or Grad-CAM++) of one spatial layer, as an explainer.

    ``explain(apply_fn, params, x [B, H, W, C], y [B]) -> [B, H, W, C]``: the map ``L`` of the
    module docstring for class ``y_b`` of each example, resized to ``H × W`` and repeated over
    the ``C`` channels. ``apply_fn`` is not called: the model is ``layer_fn``.

    Args:
      layer_fn: The model's :attr:`jaxinterp.models.Model.layer_fn` (``get_model`` and
        ``from_linen`` build it; a Linen module exposes a layer with
        :func:`jaxinterp.models.tap`). The jobs pass it from the model they load.
      layer: The layer explained; default the last layer of shape ``[B, h, w, K]`` (the last
        convolutional block: ``"conv4"`` of the CNN, ``"layer4"`` of ResNet-18).
      plus: Grad-CAM++ weights instead of Grad-CAM's.
      score: The class score differentiated (:data:`jaxinterp.core.SCORES`); the papers use
        the logit.
      resize: ``jax.image.resize`` method for ``h × w -> H × W``: ``"linear"`` (bilinear, as
        the papers), ``"cubic"`` or ``"nearest"``.

    Returns:
      ``explain(apply_fn, params, x, y, *, key=None)``; jittable, batched (examples never
      interact) and differentiable in ``x`` and ``params``. ``key`` is ignored.

    Raises:
      ValueError: No ``layer_fn`` (a model that does not open its layers), an unknown
        ``score`` or ``resize``; when called, a ``layer`` the model does not have or that is
        not spatial (the message lists the spatial layers), bad ``x`` or ``y``.

    References:
      Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra, "Grad-CAM: Visual explanations from
      deep networks via gradient-based localization", ICCV 2017; Chattopadhyay, Sarkar,
      Howlader, Balasubramanian, "Grad-CAM++: Generalized gradient-based visual explanations
      for deep convolutional networks", WACV 2018 (Eq. 19, exponential score).
    """
    if layer_fn is None:
        raise ValueError(
            "grad_cam needs the model's layers: pass layer_fn=model.layer_fn (a Model from "
            "jaxinterp.models.get_model or from_linen, whose layers are tapped)"
        )
    checks.function("layer_fn", layer_fn)
    if layer is not None and not isinstance(layer, str):
        raise checks.ArgumentTypeError(f"layer must be a layer name or None, got {layer!r}")
    checks.one_of("score", score, SCORES)
    checks.one_of("resize", resize, _RESIZE)

    def explain(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array | None = None
    ) -> jax.Array:
        del apply_fn, key
        x = checks.array(x, image=True)
        if x.ndim != 4:
            raise ValueError(f"grad_cam needs images x [B, H, W, C], got shape {x.shape}")
        logits_shape, shapes = jax.eval_shape(lambda: layer_fn(params, x, {}))
        spatial = spatial_layers(shapes)
        name = layer if layer is not None else (spatial[-1] if spatial else None)
        if name not in spatial:
            what = f"layer {name!r} is not a spatial layer" if name else "no spatial layer"
            raise ValueError(
                f"grad_cam: {what} of the model; spatial layers [B, h, w, K]: "
                f"{', '.join(spatial) or 'none'}"
            )
        labels = target_labels(check_target(y), x.shape[0], logits_shape.shape[1])

        def class_score(offset: jax.Array) -> tuple[jax.Array, jax.Array]:
            logits, features = layer_fn(params, x, {name: offset})
            return score_of_logits(logits, labels, score).sum(), features[name]

        zero = jnp.zeros(shapes[name].shape, shapes[name].dtype)
        g, a = jax.grad(class_score, has_aux=True)(zero)
        cam = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, _weights(g, a, plus)))
        b, h, w, c = x.shape
        cam = jax.image.resize(cam, (b, h, w), method=resize)
        return jnp.broadcast_to(cam[..., None], x.shape).astype(x.dtype)

    return explain
