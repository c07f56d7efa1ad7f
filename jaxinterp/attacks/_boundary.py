"""Nearest decision-boundary search: an L2 PGD ladder over radii, then Carlini–Wagner L2.

A factory in the optax style: it validates and closes over the hyperparameters and returns a
pure, batched, jittable ``search(apply_fn, params, x, y, *, key=None) -> BoundaryResult``. The
points it finds are the baselines / evaluation points of the boundary attributions in
:mod:`jaxinterp.attribution._boundary`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.losses import get_loss, margin_loss
from jaxinterp.core.ops import l2_norm
from jaxinterp.core.ops import per_example as _per_example

from ._carlini_wagner import carlini_wagner_l2
from ._pgd import ascend, pgd, random_start_point
from ._remaining import SUB_BATCH_FRACTIONS, check_fractions, on_remaining

__all__ = ["DEFAULT_EPSILONS", "BoundaryResult", "BoundarySearch", "boundary_search"]

DEFAULT_EPSILONS: tuple[float, ...] = (36 / 255, 64 / 255, 0.3, 0.5, 0.7, 0.9, 1.1)
"""The L2 radii of the reference code's PGD ladder (Wang et al. 2022)."""


class BoundaryResult(NamedTuple):
    """Per-example nearest boundary point (a pytree; fields are batched over ``B``).

    Attributes:
      x_adv: ``[B, ...]`` the closest misclassified candidate ``x'`` (after refinement, if
        any); ``x`` where none. Also available as :attr:`point`.
      distance: ``[B]`` ``‖x' - x‖₂``; ``inf`` where none was found.
      found: ``[B]`` bool, whether a misclassified candidate was found.
      pgd_point: ``[B, ...]`` the PGD ladder's raw candidate (at its smallest successful
        radius); ``x`` where no radius succeeded.
      pgd_found: ``[B]`` bool, ``pgd_point`` is misclassified (re-scored).
      cw_point: ``[B, ...]`` the raw CW-L2 candidate; ``x`` where CW failed.
      cw_found: ``[B]`` bool, ``cw_point`` is misclassified (re-scored).
    """

    x_adv: jax.Array
    distance: jax.Array
    found: jax.Array
    pgd_point: jax.Array
    pgd_found: jax.Array
    cw_point: jax.Array
    cw_found: jax.Array

    @property
    def point(self) -> jax.Array:
        """The boundary point ``x'`` (the same array as :attr:`x_adv`)."""
        return self.x_adv


BoundarySearch = Callable[..., BoundaryResult]
"""``search(apply_fn, params, x [B, ...], y [B] int, *, key=None) -> BoundaryResult``."""


def _l2(v: jax.Array) -> jax.Array:
    """Per-example L2 norm ``[B, ...] -> [B]``."""
    return l2_norm(v).reshape(v.shape[:1])


def _refine(
    wrong: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    point: jax.Array,
    found: jax.Array,
    num_steps: int,
    bounds: tuple[float, float],
) -> jax.Array:
    """Bisects ``t`` on the segment ``x + t (point - x)`` for the misclassified end nearest
    ``x``; the invariant is ``wrong(x + t_hi (point - x))``, so the result stays misclassified."""
    delta = point - x

    def bisect(_: jax.Array, t: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        t_lo, t_hi = t
        mid = (t_lo + t_hi) / 2
        is_wrong = wrong(x + _per_example(mid, x.ndim) * delta)
        return jnp.where(is_wrong, t_lo, mid), jnp.where(is_wrong, mid, t_hi)

    t0 = (jnp.zeros(found.shape, x.dtype), jnp.ones(found.shape, x.dtype))
    _, t = jax.lax.fori_loop(0, num_steps, bisect, t0)
    moved = jnp.clip(x + _per_example(t, x.ndim) * delta, *bounds)
    return jnp.where(_per_example(found & (t < 1), x.ndim), moved, point)


def _ladder(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    y: jax.Array,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    eps: tuple[float, ...],
    alphas: tuple[float, ...],
    num_steps: int,
    bounds: tuple[float, float],
    key: jax.Array | None,
    wrong: Callable[[jax.Array, jax.Array], jax.Array],
    fractions: tuple[int, ...],
) -> tuple[jax.Array, jax.Array]:
    """The L2 PGD ladder: per example, the result at the smallest radius that misclassifies.

    One ``lax.scan`` over the radii (ε and the step are traced, so one PGD loop serves them
    all); each radius attacks only the examples no smaller one has broken
    (:func:`on_remaining` over the sub-batch ``fractions``: the same result as attacking all
    of them, since a later radius never replaces a found point). Radius ``m`` starts from
    ``x + δ_m``, ``δ_m`` uniform in its ball from ``split(key, M)[m]`` and drawn for the
    whole batch, or from ``x``.
    """
    b, ndim = x.shape[0], x.ndim

    def attack(center: jax.Array, labels: jax.Array, x0: jax.Array, e: jax.Array, a: jax.Array):
        x_adv = ascend(
            apply_fn, params, center, labels, x0, epsilon=e, step_size=a,
            num_steps=num_steps, norm="l2", bounds=bounds, loss_fn=loss_fn,
        )  # fmt: skip
        return x_adv, wrong(x_adv, labels)

    def rung(carry: tuple[jax.Array, jax.Array], rung_in: tuple) -> tuple:
        point, found = carry
        k, e, a = rung_in
        x0 = x if key is None else random_start_point(k, x, e, "l2", bounds)
        x_adv, broken = on_remaining(
            lambda c, lab, s: attack(c, lab, s, e, a),
            ~found,
            (x, y, x0),
            (x, jnp.zeros(b, bool)),
            fractions,
        )
        take = broken & ~found
        return (jnp.where(_per_example(take, ndim), x_adv, point), found | take), None

    m = len(eps)
    keys = jnp.zeros((m,)) if key is None else jax.random.split(key, m)
    dtype = x.dtype
    rungs = (keys, jnp.asarray(eps, dtype), jnp.asarray(alphas, dtype))
    (point, found), _ = jax.lax.scan(rung, (x, jnp.zeros(b, bool)), rungs)
    return point, found


def boundary_search(
    *,
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    pgd_steps: int = 40,
    pgd_step_size: float | None = None,
    pgd_loss: str = "ce",
    cw_steps: int = 100,
    cw_lr: float = 1e-2,
    cw_initial_const: float = 1e-3,
    cw_binary_search_steps: int = 9,
    refine_steps: int = 10,
    bounds: tuple[float, float] = (0.0, 1.0),
    sub_batch_fractions: Sequence[int] = SUB_BATCH_FRACTIONS,
) -> BoundarySearch:
    """Builds the nearest-boundary search of boundary attributions (PGDs + CW pipeline).

    1. **PGD ladder.** For each radius ``ε₁ < ... < ε_M`` in turn, an L2 PGD attack
       (``pgd_steps`` steps, uniform random start, loss ``pgd_loss``) from ``x``; per example,
       the candidate ``x'_pgd`` is the result at the *smallest* ``ε_m`` whose result is
       misclassified (``argmax_j f_j(x') ≠ y``, tested as ``max_{j≠y} f_j - f_y > 0``).
    2. **CW-L2.** :func:`carlini_wagner_l2` (``cw_steps`` Adam steps of ``cw_lr`` per round,
       ``cw_binary_search_steps`` rounds over ``c`` from ``cw_initial_const``, ``κ = 0``)
       gives ``x'_cw``, which sits just across the boundary.
    3. **Merge.** Both candidates are re-scored, and per example the result is the closest
       misclassified one::

           x' = argmin_{c ∈ {x'_pgd, x'_cw}, f(c) misclassified} ‖c - x‖₂

    4. **Refine** (``refine_steps > 0``; not in the reference). ``refine_steps`` bisection
       steps on ``t ∈ [0, 1]`` move ``x'`` to ``x + t (x' - x)``, the misclassified end of
       the last bracket: still misclassified, never farther, and within
       ``2^-refine_steps · ‖x' - x‖₂`` of a boundary crossing on the segment. Without it, a
       PGD candidate (which *maximises* the loss in its ball) can lie deep across the
       boundary, and on 8×8 digits it beats CW-L2 (100 steps) for most examples.

    Examples with no misclassified candidate are reported, not hidden: ``found = False``,
    ``point = x``, ``distance = inf``. A misclassified ``x`` yields ``x'_cw ≈ x``
    (``distance ~1e-6``): the boundary attributions are meant for correctly classified inputs.

    Differences from the reference code, on purpose: its CW merge compares one-hot labels with
    predicted indices (a shape slip), so we implement the intent (keep the closer candidate
    only if it is misclassified), and we also drop a PGD candidate that never succeeded. Its
    PGD step ``2ε/T`` was passed to Foolbox as a *relative* step (``2ε²/T`` absolute); we use
    the absolute ``pgd_step_size`` (default ``2.5ε/T`` from :func:`pgd`). Its CW result is
    clipped to an L2 ball of radius 1 (Foolbox's ``epsilons=[1.0]``); ours is not.

    Args:
      epsilons: Strictly increasing L2 radii ``> 0`` of the ladder.
      pgd_steps: PGD steps per radius, ``>= 1``.
      pgd_step_size: Absolute PGD step ``> 0`` for every radius, or ``None`` for
        ``2.5 · ε / pgd_steps`` per radius.
      pgd_loss: ``"ce"`` (as the reference, through Foolbox) or ``"margin"``.
      cw_steps: Adam steps per CW binary-search round, ``>= 1``.
      cw_lr: CW Adam step size ``> 0``.
      cw_initial_const: CW's first trade-off constant ``c > 0`` (Foolbox's default).
      cw_binary_search_steps: CW rounds over ``c``, ``>= 1`` (Foolbox's default 9).
      refine_steps: Bisection steps toward ``x`` for the merged point, ``>= 0``; ``0`` returns
        the closer raw candidate as the reference code does.
      bounds: Finite input box ``(lo, hi)``; ``x`` must lie in it.
      sub_batch_fractions: The ladder's sub-batch sizes ``⌈B/d⌉`` for the examples no smaller
        radius has broken, as :func:`apgd`'s. ``(1,)`` compiles the whole batch alone, for a
        search run on a few batches: in the study's boundary-normals program (60 examples)
        6.2 against 10.4-11.5 s to compile, and the same time to run (8.4 against 8.1-8.3 s).

    Returns:
      ``search(apply_fn, params, x, y, *, key=None) -> BoundaryResult``: ``x`` is ``[B, ...]``
      float, ``y`` ``[B]`` integer true labels, ``key`` a PRNG key split over the ladder's
      random starts (``jax.random.split(key, M)[m]`` for ``ε_m``); with ``key=None`` the
      ladder starts from ``x`` itself (deterministic). All points lie in ``bounds``
      and carry no gradient. Pure and jittable, e.g. ``jax.jit(search, static_argnums=0)``.

    Raises:
      ValueError: On invalid hyperparameters (naming the argument); the search raises
        ``ValueError`` as :func:`pgd` does on bad inputs.

    Example:
      >>> search = boundary_search()
      >>> res = jax.jit(search, static_argnums=0)(apply_fn, params, x, y, key=key)
      >>> res.x_adv, res.distance, res.found

    References:
      Wang, Fredrikson & Datta, "Robust Models Are More Interpretable Because Attributions Look
      Normal", ICML 2022 (boundary search; reference code github.com/zifanw/boundary).
    """
    try:
        eps = tuple(checks.positive("epsilons[i]", e) for e in epsilons)
    except TypeError:
        raise checks.ArgumentTypeError(
            f"epsilons must be a sequence of numbers, got {epsilons!r}"
        ) from None
    if not eps or any(a >= b for a, b in zip(eps, eps[1:], strict=False)):
        raise ValueError(f"epsilons must be non-empty and strictly increasing, got {epsilons!r}")
    pgd_steps = checks.integer("pgd_steps", pgd_steps)
    refine_steps = checks.integer("refine_steps", refine_steps, 0)
    fractions = check_fractions(sub_batch_fractions)
    if pgd_step_size is not None:
        pgd_step_size = checks.positive("pgd_step_size", pgd_step_size)
    checks.one_of("pgd_loss", pgd_loss, ("ce", "margin"))
    bounds = checks.box(bounds, "CW's tanh box")
    for e in eps:  # Validates each radius's PGD as the ladder runs it.
        pgd(epsilon=e, num_steps=pgd_steps, step_size=pgd_step_size, norm="l2", bounds=bounds)
    alphas = tuple(checks.step_size(pgd_step_size, e, pgd_steps) for e in eps)
    loss_fn = get_loss(pgd_loss)
    try:
        cw = carlini_wagner_l2(
            num_steps=cw_steps,
            learning_rate=cw_lr,
            initial_const=cw_initial_const,
            binary_search_steps=cw_binary_search_steps,
            bounds=bounds,
        )
    except ValueError as err:  # Name the argument as the caller spelled it.
        raise ValueError(
            str(err)
            .replace("num_steps", "cw_steps")
            .replace("learning_rate", "cw_lr")
            .replace("initial_const", "cw_initial_const")
            .replace("binary_search_steps", "cw_binary_search_steps")
        ) from None

    def search(
        apply_fn: Callable[[Any, jax.Array], jax.Array],
        params: Any,
        x: jax.Array,
        y: jax.Array,
        *,
        key: jax.Array | None = None,
    ) -> BoundaryResult:
        x = checks.array(x, "x", min_ndim=2, image=True)
        y = checks.labels(y, x.shape[0], "y", num_classes=checks.num_classes(apply_fn, params, x))
        params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)

        def wrong(x_adv: jax.Array, labels: jax.Array = y) -> jax.Array:  # Misclassified.
            return margin_loss(apply_fn(params, x_adv), labels) > 0

        pgd_point, pgd_found = _ladder(
            apply_fn, params, x, y, loss_fn, eps, alphas, pgd_steps, bounds, key, wrong, fractions
        )
        cw_point, _ = cw(apply_fn, params, x, y)

        # Re-score both candidates in one pass, so the merge and `found` agree with f.
        both = wrong(jnp.concatenate([pgd_point, cw_point]), jnp.concatenate([y, y]))
        pgd_found, cw_found = both[: y.shape[0]], both[y.shape[0] :]
        inf = jnp.asarray(math.inf, jnp.promote_types(x.dtype, jnp.float32))
        d_pgd = jnp.where(pgd_found, _l2(pgd_point - x), inf)
        d_cw = jnp.where(cw_found, _l2(cw_point - x), inf)
        point = jnp.where(_per_example(d_cw < d_pgd, x.ndim), cw_point, pgd_point)
        found = pgd_found | cw_found
        point = jnp.where(_per_example(found, x.ndim), point, x)
        distance = jnp.minimum(d_pgd, d_cw)
        if refine_steps:
            point = _refine(wrong, x, point, found, refine_steps, bounds)
            distance = jnp.where(found, _l2(point - x), inf)
        out = BoundaryResult(point, distance, found, pgd_point, pgd_found, cw_point, cw_found)
        return jax.lax.stop_gradient(out)

    search.__doc__ = (
        f"Boundary search (L2 PGD ladder ε={eps}, {pgd_steps} steps, loss={pgd_loss!r}; then "
        f"CW-L2 {cw_binary_search_steps}×{cw_steps} steps, lr={cw_lr}; {refine_steps} bisection "
        "steps); see `boundary_search`."
    )
    return search
