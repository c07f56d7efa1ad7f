"""A convolution whose derivatives stay on XLA:CPU's fast path inside loops.

``loop_safe_conv`` computes exactly ``lax.conv_general_dilated``; only the way its
derivative in the input is *written* differs. JAX's transpose rule for a convolution's input
gradient emits a convolution whose kernel has its input and output feature dimensions
swapped (``dim_labels=..._01oi->...`` in ``jit(f).lower(...).compile().as_text()``).
XLA:CPU's convolution-canonicalization pass rewrites such convolutions only in the entry
computation: inside a ``while`` body (``lax.fori_loop``, ``lax.scan``) they run on a naive
loop, 5-18x slower than the library path. Every iterative method (PGD, CW, the boundary
search, RelEx, adversarial training) differentiates the model inside such a loop.

Here the convolution is a primitive of its own, ``loop_safe_conv``, computing exactly
``lax.conv_general_dilated`` (it lowers to it). It is bilinear like the convolution; its
transpose in the input is JAX's own transpose rule applied to the *explicitly transposed*
kernel (``I`` and ``O`` exchanged physically, and the dimension numbers relabelled to
match: the same linear map), which yields a canonical ``01io`` convolution. Every
convolution that its transpose and batching rules emit is rebound to ``loop_safe_conv``,
so derivatives of every order (reverse, forward and any nesting, e.g. the
reverse-over-reverse of an attribution attack) and ``vmap`` keep the property. Values
equal the plain convolution's at every order; the tests check reverse, forward,
reverse-over-reverse, forward-over-reverse, jvp-of-jvp and params-gradients of jvps in
float64 for strides, padding, dilations and feature groups.

Opting a Flax module in is one field::

    nn.Conv(features, kernel_size, conv_general_dilated=loop_safe_conv)

References:
    XLA ``ConvCanonicalization`` (xla/service/cpu/conv_canonicalization.cc) runs on the
    entry computation; JAX ``lax.conv_general_dilated`` transpose rules
    (``_conv_general_dilated_transpose_lhs``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.extend
from jax import lax
from jax.interpreters import ad, batching, mlir

__all__ = ["loop_convolutions", "loop_safe_conv"]


conv_p = lax.conv_general_dilated_p


def _swap_kernel(rhs: jax.Array, params: dict[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
    """``rhs`` with its ``I`` and ``O`` axes physically exchanged, and ``params`` relabelled
    to match, so that the pair describes the same convolution."""
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    out_axis, in_axis = rhs_spec[:2]
    perm = list(range(rhs.ndim))
    perm[out_axis], perm[in_axis] = perm[in_axis], perm[out_axis]
    dn = lax.ConvDimensionNumbers(lhs_spec, (in_axis, out_axis, *rhs_spec[2:]), out_spec)
    return lax.transpose(rhs, perm), {**params, "dimension_numbers": dn}


def _rebind(fn: Any, *args: jax.Array) -> jax.Array:
    """Evaluates ``fn(*args) -> array`` with every ``conv_general_dilated`` it emits replaced
    by :data:`safe_conv_p` (same parameters), so derivatives of the result stay loop-safe."""
    closed = jax.make_jaxpr(fn)(*args)
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jax.extend.core.Literal) else env[v]

    for var, val in zip(closed.jaxpr.constvars, closed.consts, strict=True):
        env[var] = val
    for var, val in zip(closed.jaxpr.invars, args, strict=True):
        env[var] = val
    for eqn in closed.jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive is conv_p:
            outs = [safe_conv_p.bind(*invals, **eqn.params)]
        else:
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            outs = outs if eqn.primitive.multiple_results else [outs]
        for var, val in zip(eqn.outvars, outs, strict=True):
            env[var] = val
    (out,) = closed.jaxpr.outvars
    return read(out)


def _transpose_lhs(ct: jax.Array, lhs: Any, rhs: jax.Array, **params: Any) -> jax.Array:
    # JAX's transpose of the convolution on the swapped kernel: a canonical 01io kernel.
    rhs_t, params_t = _swap_kernel(rhs, params)
    aval = lhs.aval

    def transpose(ct: jax.Array, rhs_t: jax.Array) -> jax.Array:
        return jax.linear_transpose(lambda u: conv_p.bind(u, rhs_t, **params_t), aval)(ct)[0]

    return _rebind(transpose, ct, rhs_t)


def _transpose_rhs(ct: jax.Array, lhs: jax.Array, rhs: Any, **params: Any) -> jax.Array:
    aval = rhs.aval

    def transpose(ct: jax.Array, lhs: jax.Array) -> jax.Array:
        return jax.linear_transpose(lambda u: conv_p.bind(lhs, u, **params), aval)(ct)[0]

    return _rebind(transpose, ct, lhs)


def _batch(args: Sequence[jax.Array], dims: Sequence[Any], **params: Any):
    axes = tuple(d if isinstance(d, int) else None for d in dims)  # None: not mapped.
    fn = jax.vmap(lambda lhs, rhs: conv_p.bind(lhs, rhs, **params), in_axes=axes)
    return _rebind(fn, *args), 0


safe_conv_p = jax.extend.core.Primitive("loop_safe_conv")
"""``conv_general_dilated`` with derivative and batching rules that emit itself again."""
safe_conv_p.def_impl(lambda lhs, rhs, **params: conv_p.bind(lhs, rhs, **params))
safe_conv_p.def_effectful_abstract_eval(
    lambda lhs, rhs, **params: conv_p.abstract_eval(lhs, rhs, **params)
)
ad.defbilinear(safe_conv_p, _transpose_lhs, _transpose_rhs)
batching.primitive_batchers[safe_conv_p] = _batch
mlir.register_lowering(
    safe_conv_p,
    mlir.lower_fun(lambda lhs, rhs, **params: conv_p.bind(lhs, rhs, **params), False),
)


def loop_safe_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """Drop-in for ``lax.conv_general_dilated`` whose derivatives compile fast in loops.

    Same signature and values as ``lax.conv_general_dilated`` (which resolves the padding and
    dimension numbers). The result is a ``loop_safe_conv`` primitive: its reverse-mode rule
    for ``lhs`` is JAX's own transpose rule applied to the explicitly transposed kernel, so
    the input gradient is a canonical (``01io``) convolution, and every convolution a rule
    emits is a ``loop_safe_conv`` again, so derivatives of every order (reverse, forward,
    and any nesting of them) and ``vmap`` keep the property.

    Args:
        lhs: Input, e.g. ``[B, H, W, C]`` for ``NHWC``.
        rhs: Kernel, e.g. ``[kh, kw, C / feature_group_count, O]`` for ``HWIO``.
        window_strides: Strides, one per spatial dimension.
        padding: ``"SAME"``, ``"VALID"``, ``"SAME_LOWER"`` or ``(low, high)`` pairs.
        lhs_dilation: Input dilation per spatial dimension, or ``None``.
        rhs_dilation: Kernel dilation per spatial dimension, or ``None``.
        dimension_numbers: As for ``lax.conv_general_dilated`` (``None``: ``NCHW``/``OIHW``).
        feature_group_count: Feature groups.
        batch_group_count: Batch groups.
        precision: Passed through.
        preferred_element_type: Passed through.

    Returns:
        The convolution, exactly as ``lax.conv_general_dilated`` computes it.
    """

    def plain(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )

    return _rebind(plain, lhs, rhs)


_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_CALLED = re.compile(
    r"(?:calls|to_apply|body|condition|true_computation|false_computation)=%?([\w.\-]+)"
)
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_DIM_LABELS = re.compile(r"convolution\(.*dim_labels=(\w+)_(\w+)->(\w+)")


def _canonical(lhs: str, rhs: str, out: str) -> bool:
    """XLA:CPU's canonical layout: ``b<spatial>f``, ``<spatial>io`` -> ``b<spatial>f``."""
    return (
        lhs[0] == "b"
        and lhs[-1] == "f"
        and out[0] == "b"
        and out[-1] == "f"
        and rhs[-2:] == "io"
        and lhs[1:-1] == rhs[:-2] == out[1:-1]
    )


def loop_convolutions(hlo_text: str) -> list[str]:
    """The non-canonical convolutions that a compiled module runs inside ``while`` bodies.

    These are the ones XLA:CPU runs on its slow naive path. Use it to check a model of your
    own: ``loop_convolutions(jax.jit(f).lower(*args).compile().as_text())`` should be ``[]``.

    Args:
        hlo_text: The text of a *compiled* HLO module (``Compiled.as_text()``).

    Returns:
        One ``"lhs_rhs->out"`` dimension-label string per offending convolution.
    """
    bodies: dict[str, list[str]] = {}
    name = None
    for line in hlo_text.splitlines():
        match = _COMPUTATION.match(line)
        if match:
            name = match.group(2)
            bodies[name] = []
        elif name is not None:
            bodies[name].append(line)

    def callees(comp: str) -> set[str]:
        found: set[str] = set()
        for line in bodies.get(comp, ()):
            found.update(_CALLED.findall(line))
            for group in _BRANCHES.findall(line):
                found.update(n.strip().lstrip("%") for n in group.split(","))
        return found

    loop_roots = set()
    for lines in bodies.values():
        for line in lines:
            if " while(" in line:
                loop_roots.update(re.findall(r"body=%?([\w.\-]+)", line))
    seen, todo = set(), list(loop_roots)
    while todo:
        comp = todo.pop()
        if comp not in seen:
            seen.add(comp)
            todo.extend(callees(comp))
    bad = []
    for comp in seen:
        for line in bodies.get(comp, ()):
            match = _DIM_LABELS.search(line)
            if match and not _canonical(*match.groups()):
                bad.append("{}_{}->{}".format(*match.groups()))
    return bad
