"""The model boundary: plain ``apply_fn(params, x) -> logits`` functions, and adapters to them.

Everything downstream (regularisers, attributions, attacks, training) only sees

* ``apply_fn(params, x) -> logits`` with ``x: [B, H, W, C]`` float32 and logits
  ``[B, num_classes]``, pure and jittable, and
* optionally ``features_fn(params, x) -> {layer_name: [B, ...]}`` for hidden activations,
  and ``layer_fn(params, x, offsets) -> (logits, features)`` for gradients in them.

``params`` is any pytree of float arrays, so ``jax.grad``, ``jax.jvp`` and optax work on it
directly. Ways to get such a pair:

1. Linen: :func:`from_linen` (or :func:`get_model` for the built-in zoo) wraps a module into a
   :class:`Model`.
2. NNX, Equinox, Haiku: :mod:`jaxinterp.models.adapters` (``from_nnx``, ``from_equinox``,
   ``from_haiku``) wrap their modules into a :class:`Model` too.
3. Plain JAX: any function of a params pytree already is an ``apply_fn``::

       def apply_fn(params, x):  # [B, H, W, C] -> [B, num_classes]
           return x.reshape(len(x), -1) @ params["w"] + params["b"][None, :]

       params = {"w": jnp.zeros((8 * 8 * 1, 10)), "b": jnp.zeros((10,))}

   (``[None, :]`` keeps it valid under ``jax_numpy_rank_promotion="raise"``.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, cast

import flax.linen as nn
import jax

from jaxinterp.core import checks
from jaxinterp.models.activations import check_model_config
from jaxinterp.models.cnn import LeNet
from jaxinterp.models.mlp import MLP
from jaxinterp.models.resnet import ResNet18

Params = Any
"""A pytree of arrays (nested dicts for Linen, ``nnx.State`` for NNX, anything for plain JAX)."""
ApplyFn = Callable[[Params, jax.Array], jax.Array]
FeaturesFn = Callable[[Params, jax.Array], dict[str, jax.Array]]
InitFn = Callable[[jax.Array, jax.Array], Params]
LayerFn = Callable[
    [Params, jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]
]
"""``layer_fn(params, x, offsets) -> (logits, features)``: the forward pass with
``offsets[name]`` added to the output of layer ``name`` (layers not named get no offset),
returning the logits and every layer's (offset) activation, as ``features_fn`` names them.
Its gradient in ``offsets`` at zero is the gradient of the logits in those activations."""


@dataclasses.dataclass(frozen=True)
class Model:
    """A classifier as a bundle of pure functions.

    Attributes:
        init: ``init(key, sample_x) -> params``; ``sample_x`` is ``[B, H, W, C]`` (any ``B``,
            only its shape matters). Jittable.
        apply_fn: ``apply_fn(params, x) -> logits``, ``[B, H, W, C] -> [B, num_classes]``.
        features_fn: ``features_fn(params, x) -> {name: activation}``, each value batched
            along axis 0 (``[B, ...]``), holding a layer's post-activation output.
        name: Human-readable model name (e.g. ``"resnet18"``).
        layer_fn: ``layer_fn(params, x, offsets) -> (logits, features)`` (:data:`LayerFn`),
            or ``None`` when the model does not open its layers to offsets; what Grad-CAM
            (:func:`jaxinterp.attribution.grad_cam`) differentiates.
    """

    init: InitFn
    apply_fn: ApplyFn
    features_fn: FeaturesFn
    name: str
    layer_fn: LayerFn | None = None


def _flatten_intermediates(tree: Mapping[str, Any], prefix: str = "") -> dict[str, jax.Array]:
    """Turns a Linen ``intermediates`` collection into ``{name: array}``.

    ``sow`` stores a tuple per name (one entry per call). Single entries are unwrapped; a layer
    sown ``n > 1`` times yields ``name/0`` ... ``name/{n-1}``. Nested submodule scopes are
    joined with ``/``.
    """
    out: dict[str, jax.Array] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten_intermediates(value, prefix=f"{name}/"))
        elif isinstance(value, tuple):
            if len(value) == 1:
                out[name] = value[0]
            else:
                out.update({f"{name}/{i}": v for i, v in enumerate(value)})
        else:
            out[name] = value
    return out


def _nest(flat: Mapping[str, jax.Array]) -> dict[str, Any]:
    """``{"a/b": v}`` -> ``{"a": {"b": v}}``: flat layer names as a Linen variable tree."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *scopes, leaf = name.split("/")
        node = tree
        for scope in scopes:
            node = node.setdefault(scope, {})
        node[leaf] = value
    return tree


def from_linen(module: nn.Module, name: str | None = None) -> Model:
    """Wraps a Linen module into a :class:`Model`.

    The module must map ``[B, ...]`` inputs to ``[B, num_classes]`` logits without mutable
    collections other than ``"intermediates"`` (so no BatchNorm statistics) and without RNGs
    at apply time (no active dropout).

    Args:
        module: An unbound Linen module, e.g. ``MLP(num_classes=10)``.
        name: Model name; defaults to the lower-cased class name.

    Returns:
        A :class:`Model` whose params are ``variables["params"]``, whose ``apply_fn`` is
        ``module.apply({"params": p}, x)``, whose ``features_fn`` returns the values the
        module recorded with ``self.sow("intermediates", ...)`` and whose ``layer_fn`` adds
        offsets to the layers the module exposes with :func:`~jaxinterp.models.tap` (or
        ``self.perturb``); offsetting a layer it does not tap raises ``ValueError``.

    Raises:
        ArgumentTypeError: ``module`` is not a Linen module, or ``name`` not a string.

    Example:
        >>> model = from_linen(MLP(num_classes=10, hidden=(64,)))
        >>> params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
        >>> model.apply_fn(params, x).shape  # (B, 10)
    """

    if not isinstance(module, nn.Module):
        raise checks.ArgumentTypeError(
            f"module must be an unbound flax.linen Module, got {type(module).__name__}"
        )
    if name is not None and not isinstance(name, str):
        raise checks.ArgumentTypeError(f"name must be a string or None, got {name!r}")

    def init(key: jax.Array, sample_x: jax.Array) -> Params:
        return module.init(key, sample_x)["params"]

    def apply_fn(params: Params, x: jax.Array) -> jax.Array:
        # Linen types apply() as "output or (output, state)"; without mutable= it is the output.
        return cast(jax.Array, module.apply({"params": params}, x))

    def features_fn(params: Params, x: jax.Array) -> dict[str, jax.Array]:
        _, state = module.apply({"params": params}, x, mutable=["intermediates"])
        return _flatten_intermediates(state.get("intermediates", {}))

    def _tapped(params: Params, x: jax.Array) -> dict[str, Any]:
        """The layers the module opens to offsets (traced only: no computation)."""
        variables = {"params": params, "perturbations": {}}
        _, state = jax.eval_shape(lambda: module.apply(variables, x, mutable=["perturbations"]))
        return _flatten_intermediates(state.get("perturbations", {}))

    def layer_fn(
        params: Params, x: jax.Array, offsets: Mapping[str, jax.Array]
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if offsets:
            tapped = _tapped(params, x)
            unknown = sorted(set(offsets) - set(tapped))
            if unknown:
                raise ValueError(
                    f"no tapped layer {', '.join(map(repr, unknown))} in "
                    f"{type(module).__name__}; tapped: {', '.join(tapped) or 'none'} (expose a "
                    "layer with jaxinterp.models.tap(self, name, h))"
                )
        variables = {"params": params, "perturbations": _nest(offsets)}
        # Mutable, so that the taps not offset create their zero offset instead of failing.
        logits, state = module.apply(variables, x, mutable=["perturbations", "intermediates"])
        return logits, _flatten_intermediates(state.get("intermediates", {}))

    return Model(
        init=init,
        apply_fn=apply_fn,
        features_fn=features_fn,
        name=name if name is not None else type(module).__name__.lower(),
        layer_fn=layer_fn,
    )


_REGISTRY: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "mlp": (MLP, ("hidden",)),
    "cnn": (LeNet, ("channels", "hidden", "conv")),
    "resnet18": (ResNet18, ("width", "num_groups", "conv")),
}
_ALIASES: dict[str, str] = {"lenet": "cnn"}

MODELS: tuple[str, ...] = tuple(_REGISTRY)
"""Canonical names accepted by :func:`get_model` (``"lenet"`` is an alias of ``"cnn"``)."""


def get_model(
    name: str,
    *,
    num_classes: int,
    activation: str = "softplus",
    beta: float = 1.0,
    **kwargs: Any,
) -> Model:
    """Builds a model from the zoo.

    Args:
        name: One of :data:`MODELS` (``"mlp"``, ``"cnn"``, ``"resnet18"``) or the alias
            ``"lenet"``; case-insensitive.
        num_classes: Number of logits (>= 2).
        activation: ``"relu"`` or ``"softplus"``.
        beta: Softplus sharpness β > 0.
        **kwargs: Architecture options: ``hidden`` for ``"mlp"``; ``channels``, ``hidden`` for
            ``"cnn"``; ``width``, ``num_groups`` for ``"resnet18"``; ``conv`` (the
            convolution, default :func:`~jaxinterp.models.loop_safe_conv`) for both.

    Returns:
        A :class:`Model` named by the canonical model name.

    Raises:
        ValueError: Unknown model name (lists known names), invalid ``num_classes``,
            ``activation``, ``beta`` or architecture option.
        ArgumentTypeError: A hyperparameter of the wrong type, e.g. ``hidden="64"``,
            ``channels=(16, "a")`` or ``beta="3"`` (the message names the field).
        TypeError: Keyword arguments the chosen model does not accept (names them).

    Example:
        >>> model = get_model("resnet18", num_classes=10, activation="softplus", beta=10.0)
        >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        >>> logits = model.apply_fn(params, x)  # [B, 10]
    """
    if not isinstance(name, str):
        known = ", ".join((*MODELS, *_ALIASES))
        raise checks.ArgumentTypeError(f"name must be a model name ({known}), got {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        known = ", ".join((*MODELS, *_ALIASES))
        raise ValueError(f"Unknown model {name!r}; known models: {known}")
    module_cls, allowed = _REGISTRY[key]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"get_model({key!r}) got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(allowed)}"
        )
    check_model_config(num_classes, activation, beta)
    module = module_cls(num_classes=num_classes, activation=activation, beta=beta, **kwargs)
    return from_linen(module, name=key)
