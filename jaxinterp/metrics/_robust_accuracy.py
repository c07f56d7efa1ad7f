"""Robust accuracy the way papers report it: per example, the worst case over several attacks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.protocols import ApplyFn, Attack

__all__ = ["robust_accuracy"]

_RESERVED = ("robust", "clean")


def _named(attacks: Sequence[Attack] | Mapping[str, Attack]) -> dict[str, Attack]:
    if isinstance(attacks, Mapping):
        if not attacks:
            raise ValueError("attacks must hold at least one attack, got an empty mapping")
        named: dict[str, Attack] = {}
        for name, attack in attacks.items():
            if not isinstance(name, str):
                raise checks.ArgumentTypeError(f"attacks: names must be strings, got {name!r}")
            if name in _RESERVED:
                raise ValueError(f"attacks: the names {_RESERVED} are reserved, got {name!r}")
            checks.function(f"attacks[{name!r}]", attack)
            named[name] = attack
        return named
    checks.sequence("attacks", attacks, checks.function)
    return {f"attack_{i}": attack for i, attack in enumerate(attacks)}


def robust_accuracy(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    attacks: Sequence[Attack] | Mapping[str, Attack],
    *,
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Per-example correctness on ``x`` and under each attack, and their worst case.

    With ``c(x') = 1[argmax f(x') = y]`` and ``x'_a = attack_a(x, y)``::

        clean_b  = c(x_b)
        a_b      = c(x_b) · c(x'_{a,b})             (the robust accuracy under attack a)
        robust_b = c(x_b) · Π_a c(x'_{a,b})         (the per-example worst case)

    so ``robust ≤ a`` for every attack, and the mean of ``robust`` is the robust accuracy
    papers report for an ensemble (AutoAttack counts an example as robust only if every
    attack fails on it). Every attack runs on every example (no early exit), so the values do
    not depend on the attacks' order or on the batch.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: The model's params.
      x: ``[B, ...]`` float inputs (images channels last, ``[B, H, W, C]``).
      y: ``[B]`` integer true labels.
      attacks: Attacks ``attack(apply_fn, params, x, y, *, key=None) -> x_adv`` (or a
        NamedTuple whose first field is ``x_adv``), as a sequence (named ``"attack_0"``,
        ``"attack_1"``, …) or a mapping from names (not ``"robust"`` nor ``"clean"``), e.g.
        :func:`jaxinterp.attacks.autoattack_like`.
      key: Attack ``i`` gets ``fold_in(key, i)``; ``None`` passes ``key=None`` to every
        attack (an attack with a random start then raises).

    Returns:
      ``{"robust": [B], "clean": [B], name: [B] per attack}``, float32 ``0.0`` / ``1.0``.

    Raises:
      ArgumentTypeError: ``attacks`` is not a sequence or mapping of callables (or a name is
        not a string), or bad ``x``, ``y`` or ``key`` types.
      ValueError: No attack, a reserved name, or bad shapes (``x`` not ``[B, ...]`` with
        ``B >= 1`` and channels last, logits not ``[B, K]``, ``y`` not ``[B]`` in ``[0, K)``).

    References:
      Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
      diverse parameter-free attacks", ICML 2020 (the per-example worst case over the
      ensemble).
    """
    named = _named(attacks)
    x = checks.array(x, "x", min_ndim=2, image=True)
    k = checks.num_classes(apply_fn, params, x)
    y = checks.labels(y, x.shape[0], "y", num_classes=k)
    if key is not None:
        checks.key(key)

    def correct(v: jax.Array) -> jax.Array:
        return jnp.argmax(apply_fn(params, v), axis=-1) == y

    clean = correct(x)
    per_attack = {}
    for i, (name, attack) in enumerate(named.items()):
        out = attack(
            apply_fn, params, x, y, key=None if key is None else jax.random.fold_in(key, i)
        )
        x_adv = out[0] if isinstance(out, tuple) else out
        per_attack[name] = clean & correct(x_adv)
    robust = clean
    for ok in per_attack.values():
        robust = robust & ok
    values = {"robust": robust, "clean": clean, **per_attack}
    return {name: v.astype(jnp.float32) for name, v in values.items()}
