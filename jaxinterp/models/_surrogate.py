"""Softplus surrogates of ReLU models: the same parameters, a non-zero input Hessian.

A ReLU network is piecewise linear in its input, so its input Hessian is zero almost
everywhere. Attacks on gradient explanations differentiate the explanation, i.e. the model
twice, and therefore see nothing on a ReLU model. Dombrowski et al. (NeurIPS 2019) attack the
β-softplus twin of the network instead: the same architecture and weights with every ReLU
replaced by ``softplus_β(z) = log(1 + exp(β z)) / β``, which converges uniformly to ReLU
(``0 <= softplus_β(z) - relu(z) <= log(2) / β``), so for a large β (20–100) the twin computes
almost the same function and almost the same gradient map, while its Hessian is non-zero. The
perturbation found on the twin is then evaluated on (transferred to) the ReLU model.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from jaxinterp.core import checks
from jaxinterp.models.activations import check_beta
from jaxinterp.models.model import Model, from_linen

__all__ = ["softplus_surrogate"]


def softplus_surrogate(model_module: nn.Module, beta: float) -> Model:
    """Builds the β-softplus twin of a Linen model, usable with the ReLU model's params.

    The twin is ``model_module.clone(activation="softplus", beta=beta)`` wrapped by
    :func:`~jaxinterp.models.from_linen`. Only the activation changes, so the parameter tree
    (names and shapes) is identical and the ReLU model's ``params`` work unchanged::

        f_relu(x)    = W_L relu(... relu(W_1 x + b_1) ...) + b_L
        f_β(x)       = W_L softplus_β(... softplus_β(W_1 x + b_1) ...) + b_L
        f_β → f_relu uniformly as β → ∞, and ∇²ₓ f_β ≠ 0 where ∇²ₓ f_relu = 0 a.e.

    Args:
      model_module: An unbound Linen module with ``activation`` and ``beta`` fields, e.g. a
        bundled :class:`~jaxinterp.models.MLP`, :class:`~jaxinterp.models.LeNet` or
        :class:`~jaxinterp.models.ResNet18` (typically built with ``activation="relu"``;
        a softplus module gets its β replaced).
      beta: Sharpness β > 0 of the surrogate's softplus; 20–100 keeps the twin close to the
        ReLU model while keeping second derivatives usable in float32.

    Returns:
      A :class:`~jaxinterp.models.Model` named ``"<name>_softplus"`` (``<name>`` the module's
      lower-cased class name) whose ``apply_fn(params, x)`` takes the original model's params.

    Raises:
      ArgumentTypeError: (a ``TypeError``) If ``model_module`` is not a Linen module with
        ``activation`` and ``beta`` fields, or ``beta`` is not a real number.
      ValueError: If ``beta`` is not a finite number > 0.

    Example:
      >>> relu_net = models.MLP(num_classes=10, hidden=(64,), activation="relu")
      >>> params = relu_net.init(key, x[:1])["params"]
      >>> twin = softplus_surrogate(relu_net, beta=30.0)
      >>> twin.apply_fn(params, x)  # ≈ relu_net.apply({"params": params}, x)

    References:
      Dombrowski et al., "Explanations can be manipulated and geometry is to blame",
      NeurIPS 2019 (β-smoothing of explanations).
    """
    if not isinstance(model_module, nn.Module):
        raise checks.ArgumentTypeError(
            f"model_module must be an unbound flax.linen Module, got {type(model_module).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(model_module)}
    missing = sorted({"activation", "beta"} - fields)
    if missing:
        raise checks.ArgumentTypeError(
            f"model_module {type(model_module).__name__} has no field(s) {', '.join(missing)}; "
            "softplus_surrogate needs a module with `activation` and `beta` fields "
            "(e.g. models.MLP, models.LeNet, models.ResNet18)"
        )
    beta = check_beta(beta)
    twin = model_module.clone(activation="softplus", beta=beta, parent=None)
    return from_linen(twin, name=f"{type(model_module).__name__.lower()}_softplus")
