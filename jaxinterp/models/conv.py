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
``lax.conv_general_dilated`` (it lowers to it, or to the same sum written otherwise; see
below). It is bilinear like the convolution; its
transpose in the input is JAX's own transpose rule applied to the *explicitly transposed*
kernel (``I`` and ``O`` exchanged physically, and the dimension numbers relabelled to
match: the same linear map), which yields a canonical ``01io`` convolution. Every
convolution that its transpose and batching rules emit is rebound to ``loop_safe_conv``,
so derivatives of every order (reverse, forward and any nesting, e.g. the
reverse-over-reverse of an attribution attack) and ``vmap`` keep the property. Values
equal the plain convolution's at every order; the tests check reverse, forward,
reverse-over-reverse, forward-over-reverse, jvp-of-jvp and params-gradients of jvps in
float64 for strides, padding, dilations and feature groups.

The primitive also lowers every convolution to XLA:CPU's canonical form itself. A kernel
gradient contracts over the batch, so its operands must be transposed to batch-minor order;
left to XLA, those transposes absorb the operands' elementwise producers (an activation's
bias, ``max`` and ``add``) and read all of their inputs in transposed order, about 10x slower
than transposing one stored array. Here each such operand is transposed as a stored array
(behind a conditional, which XLA does not fuse across); :func:`fused_conv_transposes` lists
any fused transpose left in a compiled module. On a 2-core Zen 4 this took the CNN's plain
train step from about 305 to 215 ms. A stride-1 convolution with few outputs per input
(``O * K <= C`` for ``K`` kernel taps: a first layer's input gradient on RGB images, 32
features to 3) is lowered as one matrix product ``C -> K * O`` and a fused shifted sum,
because XLA:CPU runs a 3-wide convolution slowly (12 ms against 5 ms at batch 128 there).
One with few inputs (``C <= 3``: a first layer on RGB or grey images, in the forward pass
and its tangents) is lowered as a sum of ``K * C`` scaled shifted copies of the input,
stored once (4.6 against 2.1 ms for 3 -> 32 features at batch 128, 32x32; 1.5 against
0.25 ms for 1 -> 16 at batch 64, 28x28). These are lowering choices only: the derivative
rules, and so the program's mathematics, are the same.

Opting a Flax module in is one field::

    nn.Conv(features, kernel_size, conv_general_dilated=loop_safe_conv)

References:
    XLA ``ConvCanonicalization`` (xla/service/cpu/conv_canonicalization.cc) runs on the
    entry computation; JAX ``lax.conv_general_dilated`` transpose rules
    (``_conv_general_dilated_transpose_lhs``).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.extend
import numpy as np
from jax import lax
from jax.interpreters import ad, batching, mlir

__all__ = ["fused_conv_transposes", "loop_convolutions", "loop_safe_conv"]


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


def _materialized_transpose(x: jax.Array, perm: Sequence[int]) -> jax.Array:
    """``lax.transpose(x, perm)`` read from ``x`` as a stored array.

    XLA:CPU fuses the elementwise producers of a transpose into it (an activation's bias,
    ``max`` and ``add``), and such a fused transpose reads several arrays in transposed
    order: 10x slower than the transpose of one stored array (58 ms against 5.5 ms for a
    softplus of 16 MB on a 2-core Zen 4). A conditional is a fusion boundary: its operand is
    stored, and XLA keeps it (the predicate, ``x[0] == x[0]``, is not a constant, and both
    branches are the same transpose, so the value is the same whatever it is).
    """
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(x.ndim)) or x.size == 0:
        return x
    return _stored(functools.partial(lax.transpose, permutation=perm), x)


def _stored(fn: Any, x: jax.Array, *rest: jax.Array) -> jax.Array:
    """``fn(x, *rest)`` computed behind a conditional, a fusion boundary for XLA: its
    operands are read as stored arrays and its result is stored once (not recomputed inside
    each consumer). The predicate, ``x[0] == x[0]``, is not a constant, and both branches are
    ``fn``, so the value is the same whatever it is (``x`` must not be empty)."""
    first = lax.reshape(lax.slice(x, (0,) * x.ndim, (1,) * x.ndim), ())
    return lax.cond(first == first, fn, fn, x, *rest)


def _plain_stride_one(params: dict[str, Any]) -> bool:
    """Stride 1, no input dilation, no feature or batch groups: the convolutions that
    :func:`_shift_add` and :func:`_tap_sum` can compute."""
    plain = all(v == 1 for v in (*params["window_strides"], *(params["lhs_dilation"] or ())))
    return plain and params["feature_group_count"] == params["batch_group_count"] == 1


def _few_outputs(rhs: jax.Array, params: dict[str, Any]) -> bool:
    """Whether a canonical convolution has so few outputs per input feature (``O * K <= C``
    for ``K > 1`` kernel taps, stride 1, no input dilation, no groups) that
    :func:`_shift_add` computes it faster: the input gradient of a first layer on RGB
    images (``C = 32`` features in, ``O = 3`` out, ``K = 9``)."""
    *taps, c, o = rhs.shape
    k = math.prod(taps)
    return _plain_stride_one(params) and k > 1 and o * k <= c


def _shift_add(lhs: jax.Array, rhs: jax.Array, params: dict[str, Any]) -> jax.Array:
    """A canonical stride-1 convolution as one matrix product and a shifted sum.

    ``z = lhs @ rhs`` (``C -> K * O`` features per position); ``out`` is the sum, over the
    kernel taps ``k``, of the padded ``z`` shifted by ``k``'s offset, at tap ``k``. XLA:CPU
    runs a convolution with 3 outputs as a matrix product 3 wide; this product is ``K * O``
    wide, and the sum is one fused pass over ``z``.
    """
    *taps, c, o = rhs.shape
    n_sp = len(taps)
    w = lax.reshape(lax.transpose(rhs, (n_sp, *range(n_sp), n_sp + 1)), (c, math.prod(taps) * o))
    z = lax.dot_general(
        lhs,
        w,
        (((lhs.ndim - 1,), (0,)), ((), ())),
        precision=params["precision"],
        preferred_element_type=params["preferred_element_type"],
    )
    # Padding z rather than lhs: XLA fuses it into the shifted sum instead of copying lhs.
    z = lax.reshape(z, (*lhs.shape[:-1], math.prod(taps), o))
    pads = [(0, 0, 0), *((lo, hi, 0) for lo, hi in params["padding"]), (0, 0, 0), (0, 0, 0)]
    z = lax.pad(z, lax.full((), 0, z.dtype), pads)
    dilation = params["rhs_dilation"] or (1,) * n_sp
    size = [z.shape[1 + i] - (taps[i] - 1) * dilation[i] for i in range(n_sp)]
    pieces = []
    for flat, tap in enumerate(itertools.product(*map(range, taps))):
        start = (0, *(t * d for t, d in zip(tap, dilation, strict=True)), flat, 0)
        limit = (
            lhs.shape[0],
            *(s + n for s, n in zip(start[1:-2], size, strict=True)),
            flat + 1,
            o,
        )
        pieces.append(lax.reshape(lax.slice(z, start, limit), (lhs.shape[0], *size, o)))
    return functools.reduce(lax.add, pieces)


def _few_inputs(lhs: jax.Array, rhs: jax.Array, params: dict[str, Any]) -> bool:
    """Whether a canonical convolution has so few input features (``C <= 3`` and
    ``C * K * O <= 1152`` products per output position, for ``K`` kernel taps and ``O``
    outputs; stride 1, no input dilation, no groups) that :func:`_tap_sum` computes it
    faster: a first layer on RGB or grey images (3x3, 3 -> 32 or 1 -> 16 features)."""
    *taps, c, o = rhs.shape
    few = c <= 3 and c * math.prod(taps) * o <= 1152
    return _plain_stride_one(params) and few and lhs.size > 0


def _tap_sum(lhs: jax.Array, rhs: jax.Array, params: dict[str, Any]) -> jax.Array:
    """A canonical stride-1 convolution with few input features as a sum of ``K * C`` scaled
    copies of the input: ``out = sum_{k, c} shift_k(lhs)[..., c] * rhs[k, c, :]``, which XLA
    fuses into one elementwise pass. XLA:CPU runs a 3-feature convolution slowly (4.6 ms
    against 2.1 ms for this sum, batch 128, 32x32, 3 -> 32 features, on a 2-core Zen 4)."""
    *taps, c, o = rhs.shape
    n_sp = len(taps)
    dtype = params["preferred_element_type"] or lax.dtype(lhs)
    lhs, rhs = lax.convert_element_type(lhs, dtype), lax.convert_element_type(rhs, dtype)
    pads = [(0, 0, 0), *((lo, hi, 0) for lo, hi in params["padding"]), (0, 0, 0)]
    lhs = lax.pad(lhs, lax.full((), 0, dtype), pads)
    dilation = params["rhs_dilation"] or (1,) * n_sp
    size = [lhs.shape[1 + i] - (taps[i] - 1) * dilation[i] for i in range(n_sp)]
    out_shape = (lhs.shape[0], *size, o)
    terms = []
    for tap in itertools.product(*map(range, taps)):
        corner = [t * d for t, d in zip(tap, dilation, strict=True)]
        for f in range(c):
            start = (0, *corner, f)
            limit = (lhs.shape[0], *(s + n for s, n in zip(corner, size, strict=True)), f + 1)
            piece = lax.broadcast_in_dim(
                lax.slice(lhs, start, limit), out_shape, tuple(range(n_sp + 2))
            )
            weight = lax.broadcast_in_dim(rhs[(*tap, f)], out_shape, (n_sp + 1,))
            terms.append(piece * weight)
    return functools.reduce(lax.add, terms)


def _lower(lhs: jax.Array, rhs: jax.Array, **params: Any) -> jax.Array:
    """The convolution as XLA:CPU's canonical one (``b01f``, ``01io`` -> ``b01f``).

    Operands whose dimension numbers are not canonical (the kernel gradient's: the input with
    its batch as the contracted feature) are transposed here, as stored arrays (see
    :func:`_materialized_transpose`), instead of by XLA's canonicalization, whose transposes
    absorb the operands' elementwise producers. The result is transposed back to the
    requested dimension order; canonical convolutions pass through unchanged.
    """
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    n = lhs.ndim
    lhs = _materialized_transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    rhs = _materialized_transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    spatial = tuple(range(1, n - 1))
    dn = lax.ConvDimensionNumbers(
        (0, n - 1, *spatial), (n - 1, n - 2, *range(n - 2)), (0, n - 1, *spatial)
    )
    params = {**params, "dimension_numbers": dn}
    if _few_outputs(rhs, params):
        out = _shift_add(lhs, rhs, params)
    elif _few_inputs(lhs, rhs, params):
        # Stored once: else XLA fuses the sum into each consumer (an activation and its
        # derivative), and computes it several times.
        out = _stored(functools.partial(_tap_sum, params=params), lhs, rhs)
    else:
        out = conv_p.bind(lhs, rhs, **params)
    order = (out_spec[0], *out_spec[2:], out_spec[1])
    return lax.transpose(out, tuple(int(i) for i in np.argsort(order)))


safe_conv_p = jax.extend.core.Primitive("loop_safe_conv")
"""``conv_general_dilated`` with derivative and batching rules that emit itself again."""
safe_conv_p.def_impl(lambda lhs, rhs, **params: conv_p.bind(lhs, rhs, **params))
safe_conv_p.def_effectful_abstract_eval(
    lambda lhs, rhs, **params: conv_p.abstract_eval(lhs, rhs, **params)
)
ad.defbilinear(safe_conv_p, _transpose_lhs, _transpose_rhs)
batching.primitive_batchers[safe_conv_p] = _batch
mlir.register_lowering(safe_conv_p, mlir.lower_fun(_lower, False))


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


def _computations(hlo_text: str) -> dict[str, list[str]]:
    """The lines of each computation of an HLO module's text, by computation name."""
    bodies: dict[str, list[str]] = {}
    name = None
    for line in hlo_text.splitlines():
        match = _COMPUTATION.match(line)
        if match:
            name = match.group(2)
            bodies[name] = []
        elif name is not None:
            bodies[name].append(line)
    return bodies


def loop_convolutions(hlo_text: str) -> list[str]:
    """The non-canonical convolutions that a compiled module runs inside ``while`` bodies.

    These are the ones XLA:CPU runs on its slow naive path. Use it to check a model of your
    own: ``loop_convolutions(jax.jit(f).lower(*args).compile().as_text())`` should be ``[]``.

    Args:
        hlo_text: The text of a *compiled* HLO module (``Compiled.as_text()``).

    Returns:
        One ``"lhs_rhs->out"`` dimension-label string per offending convolution.
    """
    bodies = _computations(hlo_text)

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


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\((.*?)\)(.*)$")
_OPERAND = re.compile(r"%?([\w.\-]+)")


def fused_conv_transposes(hlo_text: str) -> list[str]:
    """The fusions that transpose several arrays into a convolution's operand.

    XLA:CPU computes a kernel gradient from its operands in transposed order (batch as the
    contracted feature). When it fuses the operands' elementwise producers into that
    transpose, the fusion reads each of their inputs in transposed order, which runs about
    10x slower than transposing one stored array. :func:`loop_safe_conv` transposes stored
    arrays; this lists what is left. Use it like :func:`loop_convolutions`, on the text of a
    compiled module: ``[]`` is what you want.

    Args:
        hlo_text: The text of a *compiled* HLO module (``Compiled.as_text()``).

    Returns:
        The names of the offending fusions, one per convolution operand.
    """
    bodies = _computations(hlo_text)
    shapes: dict[str, str] = {}
    fusions: dict[str, tuple[list[str], str]] = {}
    conv_operands: list[str] = []
    for lines in bodies.values():
        for line in lines:
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            name, shape, opcode, operands, rest = match.groups()
            shapes[name] = shape
            names = _OPERAND.findall(operands)
            if opcode == "convolution":
                conv_operands += names
            elif opcode == "fusion":
                called = _CALLED.findall(rest)
                fusions[name] = (names, called[0] if called else "")

    def transposes(comp: str) -> bool:
        return any(re.search(r" (transpose|copy)\(", line) for line in bodies.get(comp, ()))

    def is_array(name: str) -> bool:  # Not a scalar such as a fused constant.
        return re.search(r"\[\d", shapes.get(name, "")) is not None

    bad = []
    for operand in conv_operands:
        if operand in fusions:
            inputs, comp = fusions[operand]
            if transposes(comp) and sum(map(is_array, inputs)) > 1:
                bad.append(operand)
    return bad
