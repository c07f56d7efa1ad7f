"""Value checks before timing: jaxinterp and PyTorch must compute the same numbers.

The random draws are made the way each jaxinterp penalty makes them internally (same key,
same call), then handed to the PyTorch code. Logits, each penalty's value and its
params-gradient (every leaf, mapped back to JAX layout), and each attribution are compared
in float32 with relative tolerance :data:`RTOL32`. Where a float32 comparison misses it (a
value made of a difference of nearly equal numbers, e.g. ``1 − cos`` near 0 or CURE's
gradient difference at a tiny step), the comparison is repeated in float64 (``jax.enable_x64``
and ``model.double()``) with :data:`RTOL64`; only a float64 miss is a disagreement, and it
raises :class:`ValueMismatch`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import _torch_attributions as ta
from benchmarks import _torch_models as tm
from benchmarks import _torch_penalties as tp
from benchmarks.regularizers import penalty_factories

__all__ = [
    "RTOL32",
    "RTOL64",
    "ValueMismatch",
    "check_attribution",
    "check_logits",
    "check_penalty",
]

RTOL32 = 1e-4
RTOL64 = 1e-6
"""Far below any real disagreement (≥ 1e-3), above float32 round-off in constants: Captum
builds its quadrature weights (and the trapezoid's nodes) as float32 tensors even for float64
inputs, which alone leaves ~1e-9–1e-8 relative error."""


class ValueMismatch(AssertionError):
    """jaxinterp and the PyTorch reference disagree."""


def rel_err(a: np.ndarray, b: np.ndarray, scale: float | None = None) -> float:
    """``‖a − b‖ / max(‖b‖, scale)`` (``scale`` guards leaves that are ~0 by construction)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = max(float(np.linalg.norm(b)), scale or 0.0, 1e-300)
    return float(np.linalg.norm(a - b)) / denom


def tree_rel_err(ours: dict[str, np.ndarray], jax_grads: Any) -> float:
    """Largest per-leaf relative error; a leaf is judged against 1e-3 of the whole norm."""
    ref = {path: np.asarray(_get(jax_grads, path)) for path in ours}
    total = float(np.sqrt(sum(np.sum(np.square(v, dtype=np.float64)) for v in ref.values())))
    return max(rel_err(ours[p], ref[p], 1e-3 * total) for p in ours)


def _get(tree: Any, path: str) -> Any:
    for part in path.split("/"):
        tree = tree[part]
    return tree


def jax_noise(name: str, key: jax.Array, x: jax.Array) -> np.ndarray | None:
    """The draw the jaxinterp penalty ``name`` makes from ``key`` for input ``x``."""
    kind = tp.NOISE.get(name)
    if kind == "delta":  # gradient_alignment: uniform(key) * ε (ε stored as float32)
        eps = jnp.asarray([tp.EPSILON], jnp.float32).astype(x.dtype).reshape((1,) * x.ndim)
        return np.asarray(jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps)
    if kind == "probe":  # hessian_norm, activation_sensitivity: k = 1 probe
        return np.asarray(jax.random.normal(key, (1, *x.shape), x.dtype)[0])
    return None


def _in_dtype(dtype, setup, tmodel, x):
    """Params, x and the torch model in ``dtype``."""
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), setup.params)
    tmodel = tmodel if dtype == jnp.float32 else copy.deepcopy(tmodel).double()
    return params, jnp.asarray(x, dtype), tmodel


def _jax_value_and_grad(pen, apply_fn, params, x, y, key):
    """``(value, diagnostics), params-gradient`` of a penalty, jitted (eager JAX is slower)."""

    def value(p, x, y, key):
        return pen(apply_fn, p, x, y, key=key)

    return jax.jit(jax.value_and_grad(value, has_aux=True))(params, x, y, key)


def _penalty_errors(name, setup, tmodel, x, y, key, impls, dtype) -> dict[str, float]:
    params, xj, tmodel = _in_dtype(dtype, setup, tmodel, x)
    noise = jax_noise(name, key, xj)
    xt, yt = tm.nchw(np.asarray(xj)), torch.from_numpy(np.asarray(y)).long()
    nt = None if noise is None else tm.nchw(noise)
    torch_out = {
        "eager": tp.eager_value_and_grad(name, tmodel, xt, yt, nt),
        "func": tp.func_value_and_grad(name, tmodel, xt, yt, nt),
    }
    errs: dict[str, float] = {}
    for impl in impls:
        pen = penalty_factories(setup.model)[name](impl)
        (value, _), grads = _jax_value_and_grad(pen, setup.model.apply_fn, params, xj, y, key)
        for variant, (t_value, t_grads) in torch_out.items():
            errs[f"{impl}/{variant}/value"] = rel_err(t_value, float(value))
            errs[f"{impl}/{variant}/grad"] = tree_rel_err(tm.grads_to_jax(tmodel, t_grads), grads)
    return errs


def _twice(errors: Callable[[Any], dict[str, float]], what: str) -> dict[str, Any]:
    """Float32 errors; if any exceeds RTOL32, float64 errors, which must be within RTOL64."""
    e32 = errors(jnp.float32)
    worst32 = max(e32.values())
    if worst32 <= RTOL32:
        return {"status": "ok", "dtype": "float32", "max_rel_err": worst32, "errors": e32}
    with jax.enable_x64(True):
        e64 = errors(jnp.float64)
    worst64 = max(e64.values())
    if worst64 > RTOL64:
        bad = {k: v for k, v in e64.items() if v > RTOL64}
        raise ValueMismatch(f"{what}: jaxinterp and PyTorch disagree in float64: {bad}")
    return {
        "status": f"ok (float64; float32 err {worst32:.0e})",
        "dtype": "float64",
        "max_rel_err": worst64,
        "float32_max_rel_err": worst32,
        "errors": e64,
    }


def check_logits(setup, tmodel, x) -> float:
    """Relative error of the logits; raises :class:`ValueMismatch` above RTOL32."""
    ours = np.asarray(setup.model.apply_fn(setup.params, x))
    theirs = tmodel(tm.nchw(np.asarray(x))).detach().numpy()
    err = rel_err(theirs, ours)
    if err > RTOL32:
        raise ValueMismatch(f"logits of {setup.model_name} differ: relative error {err:.2e}")
    return err


def check_penalty(
    name: str, setup, tmodel, x, y, key, impls: tuple[str, ...] = ("fast", "autodiff")
) -> dict[str, Any]:
    """Value and params-gradient of jaxinterp's ``impls`` vs torch eager and torch.func."""
    return _twice(lambda dt: _penalty_errors(name, setup, tmodel, x, y, key, impls, dt), name)


def check_attribution(case: str, cfg: dict, setup, tmodel, x, y) -> dict[str, Any]:
    """jaxinterp vs Captum attributions (SmoothGrad: in the σ → 0 limit only)."""
    noise_level = 0.0 if cfg["kind"] == "smoothgrad" else ta.NOISE_LEVEL

    def errors(dtype):
        params, xj, tm_ = _in_dtype(dtype, setup, tmodel, x)
        ours = ta.jax_call(cfg, setup.model.apply_fn, params, xj, y, noise_level)
        xt, yt = tm.nchw(np.asarray(xj)), torch.from_numpy(np.asarray(y)).long()
        base = tm.nchw(ta.baseline_for(np.asarray(xj)))
        theirs = tm.nhwc(ta.captum_fn(cfg, tm_, xt, yt, sigma=0.0, baseline=base)())
        return {"attribution": rel_err(theirs, ours)}

    out = _twice(errors, case)
    if cfg["kind"] == "smoothgrad":
        out["status"] += " (σ=0 limit; noise is torch RNG vs jax.random)"
    return out
