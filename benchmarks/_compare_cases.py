"""The cases of ``benchmarks.compare_torch``: check the values, then time both sides."""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from typing import Any

import jax
import torch
from torch.nn import functional as F

from benchmarks import _torch_attributions as ta
from benchmarks import _torch_baselines as tb
from benchmarks import _torch_checks as checks
from benchmarks import _torch_iterative as ti
from benchmarks import _torch_models as tm
from benchmarks import _torch_penalties as tp
from benchmarks._setup import BETA, Setup
from benchmarks._timing import Compiled, compile_jit, matmul_peak, paired_ratio, time_interleaved
from benchmarks.regularizers import default_impl, penalty_factories
from jaxinterp import regularizers, training

__all__ = ["TARGETS", "TARGET_SETTING", "judge", "meta", "print_targets", "run_model"]

CHECK_KEY = jax.random.PRNGKey(7)


def _torch_sync(args: argparse.Namespace):
    """How to wait for a PyTorch call: on CUDA a synchronize, on CPU nothing (eager)."""
    if args.torch_device.startswith("cuda"):

        def sync(result):
            torch.cuda.synchronize()
            return result

        return sync
    return lambda result: result


def _measure(
    args: argparse.Namespace,
    torch_calls: dict[str, Callable[[], Any]],
    jax_calls: dict[str, Compiled],
    attribution: bool = False,
) -> dict[str, Any]:
    """Times PyTorch's and jaxinterp's calls in alternation (:func:`time_interleaved`).

    ``jax_calls``: name -> :func:`compile_jit`'s program; one of them is ``jax``.
    Returns ``<name>_s`` (median seconds) for every call, ``<name>_compile_s`` and
    ``<name>_temp_bytes`` for jaxinterp's, and ``<name>_over_jax`` for PyTorch's: the median
    over rounds of the PyTorch call's time over the ``jax`` call's in the same round.
    """
    repeats, warmup = _counts(args, attribution)
    sync = _torch_sync(args)
    t = time_interleaved(
        {**torch_calls, **{k: c.call for k, c in jax_calls.items()}},
        repeats=repeats,
        warmup=warmup,
        syncs={k: sync for k in torch_calls},
    )
    out: dict[str, Any] = {f"{k}_s": v["median_s"] for k, v in t.items()}
    for k, c in jax_calls.items():
        out.update({f"{k}_compile_s": c.compile_s, f"{k}_temp_bytes": c.temp_bytes})
    for k in torch_calls:
        out[f"{k}_over_jax"] = paired_ratio(t[k]["times"], t["jax"]["times"])
    return out


def _counts(args: argparse.Namespace, attribution: bool) -> tuple[int, int]:
    """(repeats, warmup): attributions have their own, as one call costs many steps."""
    if attribution:
        return args.attr_repeats, args.attr_warmup
    return args.repeats, args.warmup


def _fresh(tmodel: torch.nn.Module) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A copy of the model (every case starts from the same weights) and its Adam."""
    model = copy.deepcopy(tmodel)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _jax_step(s: Setup, penalty) -> Compiled:
    step = training.make_train_step(s.model.apply_fn, s.tx, penalty=penalty)
    return compile_jit(step, s.state, s.batch)


def _plain_row(s: Setup, tmodel, xt, yt, args) -> dict[str, Any]:
    model, opt = _fresh(tmodel)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.detach()

    ours = _jax_step(s, None)
    out = _measure(args, {"torch": step}, {"jax": ours})
    flops = ours.flops
    peak = matmul_peak(repeats=args.repeats)
    return {
        "case": "plain step",
        "kind": "plain",
        **out,
        "flops": flops,
        "jax_gflops_per_s": flops / out["jax_s"] / 1e9,
        "matmul_peak_gflops_per_s": peak / 1e9,
        "share_of_peak": flops / out["jax_s"] / peak,
    }


def jax_impls(name: str, args: argparse.Namespace) -> list[str]:
    """The penalty's default impl first, then (``--jax-impls both``) the other one."""
    impls = [default_impl(name)]
    if args.jax_impls == "both":
        impls += [i for i in regularizers.IMPLS if i not in impls]
    return impls


def _penalty_timing(name: str, s: Setup, tmodel, xt, yt, args) -> dict[str, Any]:
    theirs = {}
    for variant, key in (("eager", "torch"), ("func", "torch_func")):
        model, opt = _fresh(tmodel)
        theirs[key] = tp.make_step(name, variant, model, opt, xt, yt, 1.0)
    impls = jax_impls(name, args)
    factory = penalty_factories(s.model)[name]
    ours = {
        "jax" if i == 0 else "jax_other": _jax_step(
            s, regularizers.combine(**{name: (1.0, factory(impl))})
        )
        for i, impl in enumerate(impls)
    }
    out = _measure(args, theirs, ours)
    out["jax_impl"] = impls[0]
    if len(impls) > 1:
        out["jax_other_impl"] = impls[1]
    return out


def _attribution_timing(cfg, s: Setup, tmodel, xt, yt, args) -> dict[str, Any]:
    x, y = s.batch["image"], s.batch["label"]
    base = ta.baseline_for(x)
    if cfg["kind"] in tb.ATTRIBUTION_KINDS:
        theirs, ours = tb.captum_fn(cfg, tmodel, xt, yt), tb.jax_fn(cfg, s.model)
    else:
        base_t = tm.nchw(base).to(xt.device)
        theirs = ta.captum_fn(cfg, tmodel, xt, yt, sigma=ta.sigma_for(x), baseline=base_t)
        ours = ta.jax_fn(cfg, s.model.apply_fn)
    compiled = compile_jit(ours, s.params, x, y, base, jax.random.PRNGKey(1))
    return _measure(args, {"torch": theirs}, {"jax": compiled}, attribution=True)


def _iterative_timing(name: str, s: Setup, tmodel, xt, yt, args) -> dict[str, Any]:
    model, opt = _fresh(tmodel)
    y = s.batch["label"]
    if name in tb.APGD_CASES:  # on the model's predictions (see _torch_baselines)
        y = tb.predicted_labels(s.model.apply_fn, s.params, s.batch["image"])
        yt = torch.from_numpy(y).long().to(xt.device)
        ours = tb.jax_attack(name, s.model.apply_fn, args.apgd_steps)
        theirs = tb.torch_attack(name, model, xt, yt, args.apgd_steps)
    else:
        ours = ti.jax_case(name, s.model.apply_fn, s.tx, args.cw_steps)
        theirs = ti.torch_case(name, model, opt, xt, yt, args.cw_steps)
    compiled = compile_jit(ours, s.params, s.batch["image"], y, jax.random.PRNGKey(1))
    return _measure(args, {"torch": theirs}, {"jax": compiled}, attribution=True)


def run_model(model_name: str, args: argparse.Namespace, emit=None) -> list[dict[str, Any]]:
    """Checks, then (unless ``--check-only``) times, every case on one model.

    ``emit(row)`` (if given) is called with each row as soon as it is timed."""
    s = Setup(model_name, args.batch_size, args.input_shape)
    tmodel = tm.build(model_name, s.params, args.input_shape, BETA)
    x, y = s.batch["image"], s.batch["label"]
    xt, yt = tm.nchw(x), torch.from_numpy(y).long()
    n = min(args.check_batch, args.batch_size)
    xc, yc = x[:n], y[:n]
    print(f"[{model_name}] checking values on {n} examples ...", file=sys.stderr, flush=True)
    logit_err = checks.check_logits(s, tmodel, xc)
    base = {**s.describe(), "check_batch": n}
    rows = [{"case": "plain step", "kind": "plain", "check": _logit_check(logit_err)}]
    for name in args.penalties:
        impls = tuple(jax_impls(name, args))
        check = checks.check_penalty(name, s, tmodel, xc, yc, CHECK_KEY, impls)
        rows.append({"case": name, "kind": "penalty", "check": check})
    attr_cases = ta.cases(args.ig_steps, args.sg_samples, args.ig_chunk)
    attr_cases += tb.attribution_cases(model_name, args.occ_window, args.occ_stride, args.occ_chunk)
    for name in set(args.attributions or ()) - {c for c, _ in attr_cases}:
        _skip(args, model_name, name, "no such attribution case for this model")
    for case, cfg in attr_cases:
        if args.attributions is None or case in args.attributions:
            check_fn = (
                tb.check_attribution
                if cfg["kind"] in tb.ATTRIBUTION_KINDS
                else checks.check_attribution
            )
            check = check_fn(case, cfg, s, tmodel, xc, yc)
            rows.append({"case": case, "kind": cfg["kind"], "cfg": cfg, "check": check})
    for name in args.iterative:
        if name in tb.APGD_CASES:
            missing = tb.torchattacks_missing()
            if missing:
                _skip(args, model_name, name, f"torchattacks missing ({missing})")
                continue
            check = tb.check_apgd(name, s, tmodel, xc, args.apgd_steps)
            rows.append({"case": name, "kind": "apgd", "check": check})
            continue
        check = ti.check_case(name, s, tmodel, xc, yc)
        rows.append({"case": name, "kind": "iterative", "check": check})
    # Values are checked on the CPU twin; timing runs on --torch-device.
    tmodel, xt, yt = (
        tmodel.to(args.torch_device),
        xt.to(args.torch_device),
        yt.to(args.torch_device),
    )
    for r in rows:
        r.update(base, torch_device=args.torch_device)
        if args.check_only:
            continue
        print(f"[{model_name}] timing {r['case']} ...", file=sys.stderr, flush=True)
        if r["kind"] == "plain":
            r.update(_plain_row(s, tmodel, xt, yt, args))
        elif r["kind"] == "penalty":
            r.update(_penalty_timing(r["case"], s, tmodel, xt, yt, args))
        elif r["kind"] in ("iterative", "apgd"):
            r.update(_iterative_timing(r["case"], s, tmodel, xt, yt, args))
        else:
            r.update(_attribution_timing(r["cfg"], s, tmodel, xt, yt, args))
        if emit is not None:
            judge(r, TARGETS, TARGET_SETTING)
            emit(r)
    return rows


def _skip(args: argparse.Namespace, model_name: str, case: str, why: str) -> None:
    """Prints why a requested case has no row; ``meta`` puts the reasons in the JSON."""
    print(f"[{model_name}] {case}: skipped, {why}", flush=True)
    args.skipped = [*getattr(args, "skipped", []), f"{model_name}/{case}: {why}"]


def _logit_check(err: float) -> dict[str, Any]:
    return {"status": "ok", "dtype": "float32", "max_rel_err": err, "errors": {"logits": err}}


TARGETS = {"penalty": 1.0, "ig": 1.0, "iterative": 1.5}
"""Minimal torch/jaxinterp time ratio per kind of case (penalty steps and iterative cases vs
PyTorch eager, IG vs Captum)."""
TARGET_SETTING = {"model": "cnn", "batch_size": 128, "input_shape": [32, 32, 3]}


def _target_of(row: dict[str, Any], targets: dict[str, float]) -> float | None:
    if row["kind"] == "plain":
        return targets["penalty"]
    return targets.get(row["kind"])


def at_target_setting(row: dict[str, Any], setting: dict[str, Any]) -> bool:
    return all(row[k] == v for k, v in setting.items())


def judge(row: dict[str, Any], targets: dict[str, float], setting: dict[str, Any]) -> None:
    """Adds ``target``, ``target_met`` and a short ``target_text`` to a timed row."""
    target = _target_of(row, targets)
    if target is None or "jax_s" not in row:
        return
    ratio = row["torch_over_jax"]
    row.update(target=target, ratio=ratio, target_met=ratio >= target)
    note = "" if at_target_setting(row, setting) else " (not the target setting)"
    row["target_text"] = f"≥{target:g}×: {'met' if ratio >= target else 'NOT met'}{note}"


def print_targets(rows: list[dict], targets: dict[str, float], setting: dict[str, Any]) -> None:
    """One line per target: which cases meet it."""
    where = ", ".join(f"{k}={v}" for k, v in setting.items())
    for kind, label in (
        ("plain", "plain step vs PyTorch eager"),
        ("penalty", "penalty step vs PyTorch eager"),
        ("iterative", "iterative case vs PyTorch eager"),
        ("ig", "IG vs Captum"),
    ):
        judged = [r for r in rows if r["kind"] == kind and "target_met" in r]
        if not judged:
            continue
        met = [r["case"] for r in judged if r["target_met"]]
        missed = [r["case"] for r in judged if not r["target_met"]]
        at = all(at_target_setting(r, setting) for r in judged)
        print(
            f"Target {label} ≥{_target_of(judged[0], targets):g}× ({where}"
            f"{'' if at else '; THIS RUN USES ANOTHER SETTING'}): "
            f"met by {met or 'none'}; not met by {missed or 'none'}"
        )


def meta(args: argparse.Namespace, targets: dict, setting: dict) -> dict[str, Any]:
    """Settings and targets for the JSON."""
    settings = {
        k: getattr(args, k)
        for k in (
            "repeats",
            "warmup",
            "attr_repeats",
            "attr_warmup",
            "ig_steps",
            "ig_chunk",
            "sg_samples",
            "check_batch",
            "cw_steps",
            "apgd_steps",
            "occ_window",
            "occ_stride",
            "occ_chunk",
        )
    }
    settings.update(
        quick=args.quick,
        check_only=args.check_only,
        penalty_weight=1.0,
        torch_threads=torch.get_num_threads(),
        rtol_float32=checks.RTOL32,
        rtol_float64=checks.RTOL64,
        apgd_robust_acc_tol=tb.ROBUST_ACC_TOL,
        apgd_loss_tol=tb.LOSS_TOL,
        skipped=getattr(args, "skipped", []),
    )
    return {"settings": settings, "targets": targets, "target_setting": setting}
