"""Adapters from other JAX frameworks to the one :class:`~jaxinterp.models.Model`.

Each adapter returns a :class:`~jaxinterp.models.Model` whose ``apply_fn(params, x)`` maps
channels-last images ``[B, H, W, C]`` to logits ``[B, num_classes]`` and whose ``params`` are
a pytree of float arrays (``jax.grad``, ``jax.jit`` and optax work on them as they are):

* :func:`from_nnx`: a Flax NNX module (``nnx.Param`` state as params). Records the values
  the module sows and opens the layers it perturbs, as :func:`~jaxinterp.models.from_linen`
  does for Linen.
* :func:`from_equinox`: an Equinox module, per example or batched, channels first or last.
  Needs ``pip install "jaxinterp[equinox]"``.
* :func:`from_haiku`: an ``hk.transform``-ed function; every module call is recorded and
  open to an offset through Haiku's method interceptor. Needs
  ``pip install "jaxinterp[haiku]"``.

The Linen adapter, :func:`~jaxinterp.models.from_linen`, lives in
:mod:`jaxinterp.models.model` with the :class:`Model` itself. Equinox and Haiku are imported
only when their adapter is called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxinterp.core import checks
from jaxinterp.models.model import Model, Params, _flatten_intermediates

if TYPE_CHECKING:
    import equinox as eqx
    import haiku as hk

__all__ = ["from_equinox", "from_haiku", "from_nnx"]

Features = dict[str, jax.Array]


def _check_name(name: Any) -> None:
    if name is not None and not isinstance(name, str):
        raise checks.ArgumentTypeError(f"name must be a string or None, got {name!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise checks.ArgumentTypeError(f"{name} must be a bool, got {value!r}")


def _unknown_layers(offsets: Mapping[str, Any], known: Any, model: str, how: str) -> None:
    """Raises ``ValueError`` naming the offset layers not in ``known``."""
    unknown = sorted(set(offsets) - set(known))
    if unknown:
        raise ValueError(
            f"no layer {', '.join(map(repr, unknown))} to offset in {model}; "
            f"layers: {', '.join(known) or 'none'} ({how})"
        )


def _path_name(path: tuple[Any, ...]) -> str:
    return "/".join(map(str, path))


# --------------------------------------------------------------------------------------- NNX


def from_nnx(module: nnx.Module, *, name: str | None = None) -> Model:
    """Wraps an (initialised) Flax NNX module into a :class:`~jaxinterp.models.Model`.

    The module is split into its graph definition, its ``nnx.Param`` variables (the
    ``params``, an ``nnx.State`` pytree of float arrays usable with ``jax.grad`` and optax)
    and all other state (RNG keys and counters, batch statistics, ...), which is frozen into
    the returned functions as constants. Splitting off the non-``Param`` state matters: RNG
    keys and integer counters are not differentiable, so ``jax.grad`` over the full state
    would fail. Because that state is frozen, call ``module.eval()`` first if it has dropout.
    Every call runs on a fresh merged copy, so ``module`` itself is never mutated, and later
    updates to it are not seen.

    Layers are exposed as in Linen, inside ``__call__``::

        h = self.perturb("conv2", h)  # open to an offset (layer_fn); identity otherwise
        self.sow(nnx.Intermediate, "conv2", h)  # recorded (features_fn)

    The calls run under ``nnx.capture``, so NNX's warnings about ``sow``/``perturb`` outside
    of it do not apply. Names of a submodule's layers are prefixed with its attribute path,
    joined by ``"/"`` (``"blocks/0/act"``).

    Args:
        module: An NNX module mapping ``[B, H, W, C]`` inputs to ``[B, num_classes]`` logits.
        name: Model name; defaults to the lower-cased class name.

    Returns:
        A :class:`~jaxinterp.models.Model` with

        * ``init(key, sample_x)``: the module's current ``nnx.Param`` state. The module is
          already initialised (NNX initialises in the constructor), so ``key`` and
          ``sample_x`` are ignored; build a new module with other ``nnx.Rngs`` for other
          weights.
        * ``apply_fn(params, x) = nnx.merge(graphdef, params, rest)(x)``.
        * ``features_fn(params, x)``: ``{name: value}`` of what the module recorded with
          ``self.sow(nnx.Intermediate, name, value)`` (a value sown ``n > 1`` times yields
          ``name/0`` ... ``name/{n-1}``).
        * ``layer_fn(params, x, offsets)``: the logits with ``offsets[name]`` added where the
          module calls ``self.perturb(name, h)`` (``nnx.Perturbation``, captured with
          ``nnx.capture``), and the recorded features; offsetting a layer the module does
          not perturb raises ``ValueError``.

    Raises:
        ArgumentTypeError: ``module`` is not an NNX module, or ``name`` not a string.

    Example:
        >>> net = nnx.Sequential(lambda x: x.reshape(len(x), -1),
        ...                      nnx.Linear(64, 10, rngs=nnx.Rngs(0)))
        >>> model = from_nnx(net)
        >>> params = model.init(jax.random.key(0), x)  # net's weights; the key is ignored
        >>> grads = jax.grad(lambda p: model.apply_fn(p, x).sum())(params)
    """
    if not isinstance(module, nnx.Module):
        raise checks.ArgumentTypeError(
            f"module must be a flax.nnx Module, got {type(module).__name__} "
            "(use from_linen for a flax.linen Module)"
        )
    _check_name(name)
    graphdef, state, *rest = nnx.split(module, nnx.Param, ...)  # rest: the one non-Param state
    model_name = name if name is not None else type(module).__name__.lower()

    def merged(params: Params) -> nnx.Module:
        return nnx.merge(graphdef, params, *rest)

    def init(key: jax.Array, sample_x: jax.Array) -> Params:
        del key, sample_x  # already initialised
        return state

    def apply_fn(params: Params, x: jax.Array) -> jax.Array:
        # Under capture, sow and perturb do not warn (nor mutate); what is sown is dropped.
        logits, _ = nnx.capture(merged(params), nnx.Intermediate)(x)
        return logits

    def features_fn(params: Params, x: jax.Array) -> Features:
        _, intermediates = nnx.capture(merged(params), nnx.Intermediate)(x)
        return _flatten_intermediates(nnx.to_pure_dict(intermediates))

    def layer_fn(
        params: Params, x: jax.Array, offsets: Mapping[str, jax.Array]
    ) -> tuple[jax.Array, Features]:
        perturbations = None
        if offsets:
            # The perturbed layers and their paths, from an abstract pass (tracing only). They
            # cannot come from the real pass: NNX returns captured perturbations and
            # intermediates in one State, where a layer both perturbed and sown under one name
            # (the pattern of the docstring) keeps only one of the two.
            taps = jax.eval_shape(lambda p: nnx.capture(merged(p), nnx.Perturbation)(x)[1], params)
            paths = {_path_name(path): path for path, _ in nnx.to_flat_state(taps)}
            _unknown_layers(
                offsets,
                paths,
                type(module).__name__,
                "expose a layer with h = self.perturb(name, h)",
            )
            perturbations = nnx.from_flat_state(
                [(paths[layer], nnx.Perturbation(offset)) for layer, offset in offsets.items()]
            )
        # The perturbations passed are applied; the others start (and stay) at zero.
        logits, intermediates = nnx.capture(merged(params), nnx.Intermediate, init=perturbations)(x)
        return logits, _flatten_intermediates(nnx.to_pure_dict(intermediates))

    return Model(
        init=init,
        apply_fn=apply_fn,
        features_fn=features_fn,
        name=model_name,
        layer_fn=layer_fn,
    )


# ----------------------------------------------------------------------------------- Equinox


def _import_equinox() -> Any:
    try:
        import equinox
    except ImportError as e:
        raise ImportError(
            "from_equinox needs Equinox: pip install 'jaxinterp[equinox]' (or pip install equinox)"
        ) from e
    return equinox


def from_equinox(
    module: eqx.Module,
    *,
    name: str | None = None,
    batched: bool = False,
    channels_first: bool = False,
    features: Callable[[Any, jax.Array], Mapping[str, jax.Array]] | None = None,
) -> Model:
    """Wraps an Equinox module into a :class:`~jaxinterp.models.Model`.

    The params are the module's inexact (floating) arrays,
    ``eqx.filter(module, eqx.is_inexact_array)``: a copy of the module with every other leaf
    ``None``. Everything else (integer arrays, activation functions, static fields) is frozen
    into the returned functions and put back with ``eqx.combine``. Equinox layers usually act
    on one example: by default ``apply_fn`` maps the module over the batch with ``jax.vmap``.
    The module must be deterministic at apply time (no ``key`` argument: call
    ``eqx.nn.inference_mode(module)`` first if it has dropout) and stateless (no
    ``eqx.nn.State``, e.g. BatchNorm).

    Args:
        module: An Equinox module mapping one example ``[H, W, C]`` (``[C, H, W]`` with
            ``channels_first``) to logits ``[num_classes]``, or with ``batched`` a batch
            ``[B, H, W, C]`` (``[B, C, H, W]``) to ``[B, num_classes]``.
        name: Model name; defaults to the lower-cased class name.
        batched: The module takes the whole batch; otherwise it is ``vmap``-ed over axis 0.
        channels_first: Move each example's channel axis first before calling the module
            (``[H, W, C] -> [C, H, W]``), as ``eqx.nn.Conv2d`` expects. The Model itself
            still takes channels-last ``[B, H, W, C]`` inputs, as the whole library does.
        features: Optional ``features(module, x) -> {name: activation}`` with ``x`` what the
            module itself receives (one example, or the batch with ``batched``; channels
            moved with ``channels_first``); mapped over the batch like the module. Equinox
            has no mechanism for recording intermediate values, so without it
            ``features_fn`` returns ``{}``.

    Returns:
        A :class:`~jaxinterp.models.Model` whose ``init(key, sample_x)`` returns the
        module's params (the module is already initialised: the arguments are ignored),
        whose ``apply_fn(params, x)`` is ``eqx.combine(params, static)`` applied to ``x``,
        whose ``features_fn`` is ``features`` (or ``{}``) and whose ``layer_fn`` is ``None``
        (Equinox has no mechanism for offsetting layers; Grad-CAM cannot use the model).

    Raises:
        ImportError: Equinox is not installed (the message gives the pip command).
        ArgumentTypeError: ``module`` is not an Equinox module, ``name`` not a string,
            ``batched`` or ``channels_first`` not a bool, or ``features`` not callable.

    Example:
        >>> class ConvNet(eqx.Module):
        ...     conv: eqx.nn.Conv2d
        ...     linear: eqx.nn.Linear
        ...     def __init__(self, key):
        ...         k1, k2 = jax.random.split(key)
        ...         self.conv = eqx.nn.Conv2d(1, 4, 3, padding=1, key=k1)  # [C, H, W]
        ...         self.linear = eqx.nn.Linear(4 * 8 * 8, 10, key=k2)
        ...     def __call__(self, x):  # one example [1, 8, 8]
        ...         return self.linear(jax.nn.softplus(self.conv(x)).reshape(-1))
        >>> model = from_equinox(ConvNet(jax.random.key(0)), channels_first=True)
        >>> params = model.init(jax.random.key(0), x)
        >>> model.apply_fn(params, jnp.zeros((4, 8, 8, 1))).shape  # (4, 10)
    """
    eqx_ = _import_equinox()
    if not isinstance(module, eqx_.Module):
        raise checks.ArgumentTypeError(
            f"module must be an equinox.Module, got {type(module).__name__}"
        )
    _check_name(name)
    _check_bool("batched", batched)
    _check_bool("channels_first", channels_first)
    checks.function("features", features, optional=True)
    state, static = eqx_.partition(module, eqx_.is_inexact_array)

    def prepare(x: jax.Array) -> jax.Array:  # an example, or with batched the batch
        return jnp.moveaxis(x, -1, 1 if batched else 0) if channels_first else x

    def call(fn: Callable[[Any, jax.Array], Any], params: Params, x: jax.Array) -> Any:
        net = eqx_.combine(params, static)
        if batched:
            return fn(net, prepare(x))
        return jax.vmap(lambda example: fn(net, prepare(example)))(x)

    def init(key: jax.Array, sample_x: jax.Array) -> Params:
        del key, sample_x  # already initialised
        return state

    def apply_fn(params: Params, x: jax.Array) -> jax.Array:
        return call(lambda net, z: net(z), params, x)

    def features_fn(params: Params, x: jax.Array) -> Features:
        if features is None:
            return {}
        return dict(call(features, params, x))

    return Model(
        init=init,
        apply_fn=apply_fn,
        features_fn=features_fn,
        name=name if name is not None else type(module).__name__.lower(),
        layer_fn=None,
    )


# ------------------------------------------------------------------------------------- Haiku


def _import_haiku() -> Any:
    try:
        import haiku
    except ImportError as e:
        raise ImportError(
            "from_haiku needs Haiku: pip install 'jaxinterp[haiku]' (or pip install dm-haiku)"
        ) from e
    return haiku


def _takes_rng(apply: Callable[..., Any]) -> bool:
    """Whether a Haiku ``apply`` is ``apply(params, rng, ...)`` (not ``without_apply_rng``)."""
    try:
        parameters = list(inspect.signature(apply).parameters)
    except (TypeError, ValueError):
        return True
    return len(parameters) >= 2 and parameters[1] == "rng"


def from_haiku(
    transformed: hk.Transformed, params: Params | None = None, *, name: str | None = None
) -> Model:
    """Wraps a Haiku-transformed classifier into a :class:`~jaxinterp.models.Model`.

    ``transformed`` is ``hk.transform(f)`` or ``hk.without_apply_rng(hk.transform(f))`` of a
    function ``f(x [B, H, W, C]) -> logits [B, num_classes]``. ``f`` must not need an RNG at
    apply time (the ``rng`` passed is ``None``) nor state (``hk.transform_with_state`` is
    not supported).

    The layers are the Haiku modules: the output of every module ``__call__`` that returns
    an array is recorded under the module's ``module_name`` (``"conv2_d"``,
    ``"mlp/~/linear_0"``), and ``layer_fn`` adds ``offsets[name]`` to that output, both
    through ``hk.intercept_methods``. A module called ``n > 1`` times yields
    ``name/0`` ... ``name/{n-1}``. Activations applied as plain functions (``jax.nn.relu``)
    are not modules: a layer is a module's output before them.

    Args:
        transformed: The ``hk.Transformed`` pair.
        params: Trained parameters; ``None`` to let ``init`` initialise them.
        name: Model name; defaults to ``"haiku"``.

    Returns:
        A :class:`~jaxinterp.models.Model` with ``init(key, sample_x) =
        transformed.init(key, sample_x)`` (or ``params`` when given, the arguments then
        ignored), ``apply_fn(p, x) = transformed.apply(p, None, x)`` (``apply(p, x)`` for
        ``without_apply_rng``), ``features_fn`` returning every module's output and
        ``layer_fn`` offsetting them; offsetting a layer that is not a module output raises
        ``ValueError``.

    Raises:
        ImportError: Haiku is not installed (the message gives the pip command).
        ArgumentTypeError: ``transformed`` is not an ``hk.Transformed`` (e.g. a
            ``hk.TransformedWithState``), or ``name`` not a string.

    Example:
        >>> def f(x):
        ...     h = jax.nn.softplus(hk.Conv2D(4, kernel_shape=3)(x))
        ...     return hk.Linear(10)(hk.Flatten()(h))
        >>> model = from_haiku(hk.without_apply_rng(hk.transform(f)))
        >>> params = model.init(jax.random.key(0), x)
        >>> logits, features = model.layer_fn(params, x, {})  # features["conv2_d"]: [B, H, W, 4]
    """
    hk_ = _import_haiku()
    if not isinstance(transformed, hk_.Transformed):
        stateful = isinstance(transformed, hk_.TransformedWithState)
        raise checks.ArgumentTypeError(
            f"transformed must be hk.transform(f) or hk.without_apply_rng(hk.transform(f)), "
            f"got {type(transformed).__name__}" + (" (state is not supported)" if stateful else "")
        )
    _check_name(name)
    takes_rng = _takes_rng(transformed.apply)

    def apply(p: Params, x: jax.Array) -> jax.Array:
        return transformed.apply(p, None, x) if takes_rng else transformed.apply(p, x)

    def init(key: jax.Array, sample_x: jax.Array) -> Params:
        if params is not None:
            return params
        return transformed.init(key, sample_x)

    def run(
        p: Params, x: jax.Array, offsets: Mapping[str, jax.Array]
    ) -> tuple[jax.Array, Features]:
        outputs: dict[str, list[jax.Array]] = {}

        def interceptor(next_f: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
            out = next_f(*args, **kwargs)
            if context.method_name != "__call__" or not isinstance(out, jax.Array):
                return out
            layer = context.module.module_name
            calls = outputs.setdefault(layer, [])
            key = f"{layer}/{len(calls)}"
            if key in offsets:
                out = out + offsets[key]
            elif not calls and layer in offsets:
                out = out + offsets[layer]
            calls.append(out)
            return out

        with hk_.intercept_methods(interceptor):
            logits = apply(p, x)
        return logits, _flatten_intermediates({k: tuple(v) for k, v in outputs.items()})

    def features_fn(p: Params, x: jax.Array) -> Features:
        return run(p, x, {})[1]

    def layer_fn(
        p: Params, x: jax.Array, offsets: Mapping[str, jax.Array]
    ) -> tuple[jax.Array, Features]:
        logits, features = run(p, x, offsets)
        _unknown_layers(offsets, features, "the Haiku function", "the outputs of its modules")
        return logits, features

    return Model(
        init=init,
        apply_fn=apply,
        features_fn=features_fn,
        name=name if name is not None else "haiku",
        layer_fn=layer_fn,
    )
