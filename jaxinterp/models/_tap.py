"""Named layer taps: a hidden activation both recorded and open to an additive offset.

:func:`tap` is how a Linen module exposes a layer to the methods that look inside the model:
``self.sow("intermediates", name, h)`` records it (for ``features_fn``: activation
sensitivity, Grad-CAM's activations) and ``self.perturb(name, h)`` adds an offset from the
``"perturbations"`` collection when one is passed (for ``layer_fn``: the gradient of the
logits in the activation, Grad-CAM's weights). Without that collection ``perturb`` is the
identity, so a tapped module computes exactly what an untapped one does.
"""

from __future__ import annotations

import flax.linen as nn
import jax

__all__ = ["tap", "tapped"]


def tap(module: nn.Module, name: str, h: jax.Array) -> jax.Array:
    """Exposes ``h`` as layer ``name`` of ``module``; returns the value the model goes on with.

    Call it inside a ``@nn.compact`` method, ``h = tap(self, "conv4", h)``. The returned value
    is ``h`` plus the offset ``perturbations[name]`` when the module is applied with a
    ``"perturbations"`` collection (:attr:`jaxinterp.models.Model.layer_fn` does so), and
    ``h`` itself otherwise; the recorded intermediate is that returned value.

    Args:
      module: The bound module (``self``).
      name: The layer's name, unique within the module, distinct from its submodule names.
      h: The activation, batched along axis 0.

    Returns:
      The (possibly offset) activation, shaped like ``h``.
    """
    h = module.perturb(name, h)
    module.sow("intermediates", name, h)
    return h


def tapped(module: nn.Module, name: str) -> bool:
    """Whether :func:`tap` ``(module, name, h)`` would do anything in this call: record ``h``
    (the ``"intermediates"`` collection is mutable, e.g. during ``init`` or for
    ``features_fn``) or offset it (a ``"perturbations"`` entry is passed or being created).
    When it would not, a module may compute the layer in any exactly equivalent order."""
    return (
        module.is_mutable_collection("intermediates")
        or module.is_mutable_collection("perturbations")
        or module.has_variable("perturbations", name)
    )
