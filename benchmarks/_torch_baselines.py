"""Grad-CAM, occlusion and APGD against Captum and torchattacks, on the same weights.

* ``grad_cam``: jaxinterp's ``EXPLAINERS["grad_cam"]`` (layer ``"conv4"``, bilinear resize)
  against Captum's ``LayerGradCam`` on the twin's identity module at the same tap (after the
  4th conv's softplus, before the pool), ``relu_attributions=True``, upsampled with
  ``LayerAttribution.interpolate(..., interpolate_mode="bilinear")`` (``F.interpolate``,
  ``align_corners=False``). Checked twice: the map before upsampling (jaxinterp's with
  ``resize="nearest"``, read at every ``f``-th pixel, is the raw map when the layer is ``f``
  times smaller than the input), and the upsampled map (channel 0; jaxinterp repeats it over
  the channels): ``jax.image.resize("linear")`` and ``F.interpolate(bilinear)`` both use
  half-pixel centres and clamp at the border, so they agree for an integer factor. The CNN
  only (the MLP has no spatial layer).
* ``occlusion``: ``EXPLAINERS["occlusion"]`` (window ``w``, stride ``s``, baseline 0,
  ``chunk_size`` window positions at once) against Captum's ``Occlusion`` with
  ``sliding_window_shapes=(C, w, w)``, ``strides=(C, s, s)``, ``baselines=0`` and
  ``perturbations_per_eval`` = the same chunk (both then evaluate ``chunk · B`` perturbed
  images per forward pass). jaxinterp moves its last window of a row or column to end at the
  border, Captum stops at the last whole stride; the two sets of windows, and so the maps
  (mean score drop over the windows covering a pixel), coincide when ``(H − w)`` and
  ``(W − w)`` are multiples of ``s``, which ``compare_torch`` requires (``--occ-window``,
  ``--occ-stride``).
* ``apgd_ce``, ``apgd_t``: ``ATTACKS["apgd_ce"]`` / ``["apgd_t"]`` (L∞, ε = 8/255, one restart,
  APGD-T over the 9 other classes) against torchattacks' ``APGD(loss="ce")`` / ``APGDT``
  at the same ε, steps, restarts and ρ = 0.75. The labels are the model's own predictions on
  the clean batch, so that every example is correctly classified at the start: torchattacks
  attacks only those (and APGD-T drops each example as soon as one target fools it), while
  jaxinterp runs every run on every example (fixed shapes under ``jit``); on the benchmark's
  random labels torchattacks would attack ~10 % of the batch. The random starts differ
  (torch's RNG vs ``jax.random``), so the values cannot match draw for draw: the check
  verifies that both results stay in the ε-ball and in ``[0, 1]``, that their robust
  accuracies on the check batch (judged by the JAX model) differ by at most
  :data:`ROBUST_ACC_TOL`, and that the loss each side reaches in one run gains as much over
  the clean point within :data:`LOSS_TOL` (:func:`check_apgd`); the status says what was
  checked. On the untrained benchmark CNN at the quick 8×8 setting neither side fools any
  example, so there the robust accuracies agree trivially and the loss gain is the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam, Occlusion

from benchmarks import _torch_checks as checks
from benchmarks import _torch_models as tm
from jaxinterp import attacks, attribution

__all__ = [
    "APGD_CASES",
    "ATTRIBUTION_KINDS",
    "EPS",
    "LOSS_TOL",
    "ROBUST_ACC_TOL",
    "attribution_cases",
    "captum_fn",
    "check_apgd",
    "check_attribution",
    "jax_attack",
    "jax_fn",
    "predicted_labels",
    "torch_attack",
    "torchattacks_missing",
]

ATTRIBUTION_KINDS = ("grad_cam", "occlusion")
APGD_CASES = ("apgd_ce", "apgd_t")
EPS = 8 / 255
GRAD_CAM_LAYER = "conv4"
ROBUST_ACC_TOL = 0.25
"""Largest difference of the two robust accuracies (shares of the check batch) accepted: the
random starts differ, so examples near the ε boundary can fall either way."""
LOSS_TOL = 0.05
"""Largest relative difference of the loss gained over the clean point at the two sides'
highest-loss points (measured: 1–2 % on the benchmark's CNN, 8×8 at 2 steps and 32×32 at 10)."""


def torchattacks_missing() -> str | None:
    """Why torchattacks cannot be imported, or ``None`` if it can."""
    try:
        import torchattacks  # noqa: F401
    except ImportError as err:
        return str(err)
    return None


def attribution_cases(
    model_name: str, window: int, stride: int, chunk: int
) -> list[tuple[str, dict[str, Any]]]:
    """``grad_cam`` (CNN only) and ``occlusion`` at ``window``/``stride``/``chunk``."""
    out: list[tuple[str, dict[str, Any]]] = []
    if model_name == "cnn":
        out.append(("grad_cam", {"kind": "grad_cam", "layer": GRAD_CAM_LAYER}))
    cfg = {"kind": "occlusion", "window": window, "stride": stride, "chunk": chunk}
    out.append(("occlusion", cfg))
    return out


def captum_fn(
    cfg: dict[str, Any], model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """Captum's attribution of the target logit for NCHW ``x`` (Grad-CAM: ``[B, 1, H, W]``)."""
    if cfg["kind"] == "grad_cam":
        cam = LayerGradCam(model, model.taps[cfg["layer"]])
        size = tuple(x.shape[2:])
        return lambda: LayerAttribution.interpolate(
            cam.attribute(x, target=y, relu_attributions=True), size, interpolate_mode="bilinear"
        )
    occ = Occlusion(model)
    c, w, s = x.shape[1], cfg["window"], cfg["stride"]
    return lambda: occ.attribute(
        x,
        sliding_window_shapes=(c, w, w),
        strides=(c, s, s),
        baselines=0,
        target=y,
        perturbations_per_eval=cfg["chunk"],
    )


def _explainer(cfg: dict[str, Any], model, **overrides: Any):
    if cfg["kind"] == "grad_cam":
        return attribution.EXPLAINERS.build(
            "grad_cam", layer_fn=model.layer_fn, layer=cfg["layer"], **overrides
        )
    return attribution.EXPLAINERS.build(
        "occlusion", window=cfg["window"], stride=cfg["stride"], chunk_size=cfg["chunk"]
    )


def jax_fn(cfg: dict[str, Any], model) -> Callable:
    """jaxinterp's counterpart ``fn(params, x, y, baseline, key) -> [B, H, W, C]`` (NHWC), the
    signature of :func:`benchmarks._torch_attributions.jax_fn` (``baseline``, ``key`` unused)."""
    explain = _explainer(cfg, model)
    return lambda params, x, y, baseline, key: explain(model.apply_fn, params, x, y)


def _grad_cam_errors(cfg, setup, tmodel, x, y, dtype) -> dict[str, float]:
    params, xj, tmod = checks._in_dtype(dtype, setup, tmodel, x)
    model = setup.model
    xt, yt = tm.nchw(np.asarray(xj)), torch.from_numpy(np.asarray(y)).long()
    raw = LayerGradCam(tmod, tmod.taps[cfg["layer"]])
    theirs_map = raw.attribute(xt, target=yt, relu_attributions=True)[:, 0].detach().numpy()
    factor = xt.shape[2] // theirs_map.shape[1]
    if factor * theirs_map.shape[1] != xt.shape[2] or factor * theirs_map.shape[2] != xt.shape[3]:
        raise ValueError(f"grad_cam check: layer {theirs_map.shape[1:]} is not an integer factor")
    nearest = _explainer(cfg, model, resize="nearest")
    ours_map = np.asarray(jax.jit(lambda p, v: nearest(model.apply_fn, p, v, y))(params, xj))
    ours_map = ours_map[:, ::factor, ::factor, 0]
    ours_up = np.asarray(jax.jit(jax_fn(cfg, model))(params, xj, y, None, None))[..., 0]
    theirs_up = captum_fn(cfg, tmod, xt, yt)()[:, 0].detach().numpy()
    return {
        "map": checks.rel_err(theirs_map, ours_map),
        "upsampled": checks.rel_err(theirs_up, ours_up),
    }


def _occlusion_errors(cfg, setup, tmodel, x, y, dtype) -> dict[str, float]:
    params, xj, tmod = checks._in_dtype(dtype, setup, tmodel, x)
    xt, yt = tm.nchw(np.asarray(xj)), torch.from_numpy(np.asarray(y)).long()
    ours = np.asarray(jax.jit(jax_fn(cfg, setup.model))(params, xj, y, None, None))
    theirs = tm.nhwc(captum_fn(cfg, tmod, xt, yt)())
    return {"attribution": checks.rel_err(theirs, ours)}


def check_attribution(case: str, cfg: dict, setup, tmodel, x, y) -> dict[str, Any]:
    """jaxinterp vs Captum (relative error, float32, float64 where float32 misses)."""
    errors = _grad_cam_errors if cfg["kind"] == "grad_cam" else _occlusion_errors
    out = checks._twice(lambda dtype: errors(cfg, setup, tmodel, x, y, dtype), case)
    if cfg["kind"] == "grad_cam":
        out["status"] += " (map and bilinear upsampling)"
    return out


def predicted_labels(apply_fn, params, x) -> np.ndarray:
    """The model's predictions on ``x`` (int32): the labels the APGD cases attack."""
    return np.array(jnp.argmax(jax.jit(apply_fn)(params, x), axis=-1), np.int32)


def jax_attack(name: str, apply_fn, steps: int) -> Callable:
    """``fn(params, x, y, key) -> x_adv``: jaxinterp's APGD-CE or APGD-T (to be jitted)."""
    attack = attacks.ATTACKS.build(name, epsilon=EPS, num_steps=steps, num_restarts=1)
    return lambda p, x, y, k: attack(apply_fn, p, x, y, key=k)


def torch_attack(name: str, model, x, y, steps: int) -> Callable[[], torch.Tensor]:
    """A zero-argument callable running torchattacks' APGD / APGDT on NCHW ``x``."""
    import torchattacks

    if name == "apgd_ce":
        atk = torchattacks.APGD(
            model, norm="Linf", eps=EPS, steps=steps, n_restarts=1, loss="ce", rho=0.75
        )
    else:
        with torch.no_grad():
            k = model(x[:1]).shape[1]
        atk = torchattacks.APGDT(
            model, norm="Linf", eps=EPS, steps=steps, n_restarts=1, rho=0.75, n_classes=k
        )
    return lambda: atk(x, y)


def _best_points(name: str, setup, tmodel, x: np.ndarray, y: np.ndarray, steps: int, ours):
    """Each side's highest-loss point of one run, and the per-example loss ``fn(adv)``.

    APGD-CE: jaxinterp's result ``ours`` (its highest-CE iterate where it fooled nothing) and
    torchattacks' ``perturb(best_loss=True)``. APGD-T: one run toward the class of the 2nd
    highest clean logit on each side (jaxinterp ``num_target_classes=1``, torchattacks
    ``attack_single_run`` with ``target_class=2``), by the targeted DLR loss."""
    f, params = setup.model.apply_fn, setup.params
    xt, yt = tm.nchw(x), torch.from_numpy(y).long()
    import torchattacks

    if name == "apgd_ce":
        atk = torchattacks.APGD(tmodel, eps=EPS, steps=steps, n_restarts=1, loss="ce")
        theirs = atk.perturb(xt, yt, best_loss=True)[1]

        def loss_of(v):
            return -jnp.take_along_axis(jax.nn.log_softmax(f(params, v)), y[:, None], 1)[:, 0]
    else:
        attack = attacks.apgd(
            epsilon=EPS, num_steps=steps, loss="dlr_targeted", num_target_classes=1
        )
        run = jax.jit(lambda p, v, k: attack(f, p, v, y, key=k))
        ours = run(params, x, jax.random.PRNGKey(3))
        atk = torchattacks.APGDT(tmodel, eps=EPS, steps=steps, n_restarts=1, n_classes=10)
        atk.target_class = 2
        torch.manual_seed(0)
        theirs = atk.attack_single_run(xt, yt)[0]
        target = jnp.argsort(f(params, x), axis=1)[:, -2]

        def loss_of(v):
            return attacks.dlr_targeted_loss(f(params, v), y, target)

    return np.asarray(ours), tm.nhwc(theirs), lambda v: np.asarray(loss_of(jnp.asarray(v)))


def check_apgd(name: str, setup, tmodel, x: np.ndarray, steps: int) -> dict[str, Any]:
    """Both attacks on the check batch (labels: the predictions), not draw for draw.

    Checks that each side's result lies in the ε-ball and ``[0, 1]``, that the robust
    accuracies differ by at most :data:`ROBUST_ACC_TOL`, and that the loss gain over the clean
    point at each side's highest-loss point of one run (:func:`_best_points`) agrees within
    :data:`LOSS_TOL` (relative, on the examples neither side fooled). Raises
    :class:`checks.ValueMismatch` otherwise."""
    f, params = setup.model.apply_fn, setup.params
    y = predicted_labels(f, params, x)
    ours = np.asarray(jax.jit(jax_attack(name, f, steps))(params, x, y, jax.random.PRNGKey(3)))
    theirs = tm.nhwc(torch_attack(name, tmodel, tm.nchw(x), torch.from_numpy(y).long(), steps)())
    out: dict[str, float] = {}
    for side, adv in (("jaxinterp", ours), ("torchattacks", theirs)):
        linf = float(np.max(np.abs(adv - x)))
        if linf > EPS * (1 + 1e-5) or adv.min() < 0 or adv.max() > 1:
            raise checks.ValueMismatch(
                f"{name}: {side}'s result leaves the ε-ball or [0, 1]: ‖δ‖∞ = {linf:.6f} "
                f"(ε = {EPS:.6f}), range [{adv.min():.4f}, {adv.max():.4f}]"
            )
        out[f"{side}_linf"] = linf
        out[f"{side}_robust_acc"] = float(np.mean(predicted_labels(f, params, adv) == y))
    gap = abs(out["jaxinterp_robust_acc"] - out["torchattacks_robust_acc"])
    if gap > ROBUST_ACC_TOL:
        raise checks.ValueMismatch(
            f"{name}: robust accuracies differ by {gap:.2f} > {ROBUST_ACC_TOL} on "
            f"{x.shape[0]} examples: {out}"
        )
    best_ours, best_theirs, loss_of = _best_points(name, setup, tmodel, x, y, steps, ours)
    keep = (predicted_labels(f, params, best_ours) == y) & (
        predicted_labels(f, params, best_theirs) == y
    )
    clean = loss_of(x)
    note = "no example left unfooled to compare losses"
    if keep.any():
        gain_ours, gain_theirs = (loss_of(v)[keep] - clean[keep] for v in (best_ours, best_theirs))
        out["loss_gain_rel_err"] = checks.rel_err(gain_ours, gain_theirs)
        out["loss_gain_jaxinterp"] = float(np.mean(gain_ours))
        out["loss_gain_torchattacks"] = float(np.mean(gain_theirs))
        if out["loss_gain_rel_err"] > LOSS_TOL:
            raise checks.ValueMismatch(
                f"{name}: the loss gained at the best point differs by "
                f"{out['loss_gain_rel_err']:.3f} (relative) > {LOSS_TOL}: {out}"
            )
        note = f"best-loss gain err {out['loss_gain_rel_err']:.0e} on {int(keep.sum())} ex."
    status = (
        f"ok (not draw for draw: ε-ball, [0,1]; robust acc "
        f"{out['jaxinterp_robust_acc']:.2f} vs {out['torchattacks_robust_acc']:.2f}; {note})"
    )
    return {"status": status, "dtype": "float32", "max_rel_err": gap, "errors": out}
