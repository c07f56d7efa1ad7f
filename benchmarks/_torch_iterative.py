"""The iterative cases of ``compare_torch``: the PyTorch eager loop a researcher writes today.

Each twin mirrors the jaxinterp method's definition (same loss, step rule, projection,
bounds, start) with plain ``torch.autograd.grad`` in a Python loop. Random starts can be
passed in, so that the value checks give both sides jaxinterp's own draws; the timed runs
draw with ``torch``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.nn import functional as F

from benchmarks import _torch_checks as checks
from benchmarks import _torch_models as tm
from jaxinterp import attacks, attribution, regularizers, training

__all__ = ["CASES", "jax_case", "torch_case", "check_case"]

EPS = 8 / 255
CW_ROUNDS = 3
RELEX_SAMPLES = 10
BOUNDARY_PGD_STEPS = 10
BOUNDARY_CW_STEPS = 20
BOUNDARY_REFINE_STEPS = 10
CASES = ("pgd10", "pgd40", "cw_l2", "boundary_search", "relex", "pgd_at_step", "trades_step")
"""Iterative case names; ``cw_l2`` runs ``CW_ROUNDS`` rounds of ``--cw-steps`` steps;
``boundary_search`` the L2 PGD ladder over ``attacks.DEFAULT_EPSILONS`` (7 radii,
:data:`BOUNDARY_PGD_STEPS` steps each), CW-L2 (``CW_ROUNDS`` × :data:`BOUNDARY_CW_STEPS`)
and :data:`BOUNDARY_REFINE_STEPS` bisection steps."""


def pgd_linf(model, x, y, eps, steps, delta0=None, alpha=None):
    """L∞ PGD on the summed cross-entropy, clipped to the ball and [0, 1]."""
    alpha = 2.5 * eps / steps if alpha is None else alpha
    start = x if delta0 is None else x + delta0
    x_adv = torch.min(torch.max(start, x - eps), x + eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - eps), x + eps)
        x_adv = x_adv.clamp(0, 1)
    return x_adv.detach()


def trades_attack(model, x, eps, steps, noise):
    """Signed ascent on ``Σ KL(p(x) ‖ p(x'))`` from ``x + 0.001·noise``."""
    alpha = 2.5 * eps / steps
    with torch.no_grad():
        log_p = F.log_softmax(model(x), dim=-1)
    z = (x + 0.001 * noise).clamp(0, 1)
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(z), dim=-1), log_p, log_target=True, reduction="sum")
        (g,) = torch.autograd.grad(kl, z)
        z = torch.min(torch.max(z.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return z.detach()


def cw_l2(model, x, y, steps, rounds, lr=1e-2, c0=1e-3):
    """CW-L2 (tanh box, Adam, binary search over c), as ``attacks.carlini_wagner_l2``."""
    b = x.shape[0]
    w0 = torch.atanh((2 * x - 1) * 0.999999)
    const = torch.full((b,), c0, dtype=x.dtype)
    lower, upper = torch.zeros(b, dtype=x.dtype), torch.full((b,), float("inf"), dtype=x.dtype)
    best, best_d = x.clone(), torch.full((b,), float("inf"), dtype=x.dtype)
    with torch.no_grad():
        onehot = F.one_hot(y, model(x[:1]).shape[1]).bool()
    for _ in range(rounds):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(b, dtype=torch.bool)
        for _ in range(steps):
            x_adv = ((torch.tanh(w) + 1) / 2).clamp(0, 1)
            logits = model(x_adv)
            other = logits.masked_fill(onehot, -float("inf")).amax(dim=1)
            margin = other - logits.gather(1, y[:, None])[:, 0]
            dist = (x_adv - x).flatten(1).square().sum(1)
            loss = (dist + const * torch.relu(-margin)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                better = (margin > 0) & (dist < best_d)
                best = torch.where(better[:, None, None, None], x_adv, best)
                best_d = torch.where(better, dist, best_d)
                found |= margin > 0
            opt.step()
        upper = torch.where(found, torch.minimum(upper, const), upper)
        lower = torch.where(found, lower, torch.maximum(lower, const))
        const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
    return best.detach(), torch.isfinite(best_d)


def _l2_ball(v, x, eps):
    """``v`` projected onto the L2 ball of radius ``eps`` around ``x``, then into [0, 1]."""
    d = v - x
    n = d.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return (x + d * torch.clamp(eps / (n + 1e-30), max=1.0)).clamp(0, 1)


def pgd_l2(model, x, y, eps, steps, delta0=None):
    """L2 PGD on the summed cross-entropy: unit-L2 steps of ``2.5 ε / steps``, projected."""
    alpha = 2.5 * eps / steps
    x_adv = x if delta0 is None else _l2_ball(x + delta0, x, eps)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        n = g.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
        x_adv = _l2_ball(x_adv.detach() + alpha * g / torch.where(n > 0, n, 1.0), x, eps)
    return x_adv.detach()


def _l2_start(x, eps):
    """A uniform sample of the L2 ball of radius ``eps``, one per example."""
    d = torch.randn_like(x).flatten(1)
    r = eps * torch.rand(x.shape[0], dtype=x.dtype) ** (1.0 / x[0].numel())
    return (d / d.norm(dim=1, keepdim=True) * r[:, None]).view_as(x)


def boundary_search(model, x, y, epsilons, pgd_steps, cw_steps, cw_rounds, refine_steps, start):
    """The nearest-boundary search of ``attacks.boundary_search``: the L2 PGD ladder (the
    candidate of the smallest radius that misclassifies), CW-L2, the closer misclassified
    candidate, then bisection toward ``x``. ``start``: random starts (or ``None``: from x)."""
    with torch.no_grad():
        onehot = F.one_hot(y, model(x[:1]).shape[1]).bool()

    def wrong(v, labels=y, hot=onehot):
        with torch.no_grad():
            logits = model(v)
        other = logits.masked_fill(hot, -float("inf")).amax(dim=1)
        return other - logits.gather(1, labels[:, None])[:, 0] > 0

    def per_example(v):
        return v.view(-1, *([1] * (x.dim() - 1)))

    pgd_point, pgd_found = x.clone(), torch.zeros(x.shape[0], dtype=torch.bool)
    for eps in epsilons:
        x_adv = pgd_l2(model, x, y, eps, pgd_steps, None if start is None else start(x, eps))
        take = wrong(x_adv) & ~pgd_found
        pgd_point = torch.where(per_example(take), x_adv, pgd_point)
        pgd_found = pgd_found | take
    cw_point, _ = cw_l2(model, x, y, cw_steps, cw_rounds)
    both = wrong(torch.cat([pgd_point, cw_point]), torch.cat([y, y]), torch.cat([onehot] * 2))
    pgd_found, cw_found = both[: x.shape[0]], both[x.shape[0] :]
    inf = torch.tensor(float("inf"), dtype=x.dtype)
    d_pgd = torch.where(pgd_found, (pgd_point - x).flatten(1).norm(dim=1), inf)
    d_cw = torch.where(cw_found, (cw_point - x).flatten(1).norm(dim=1), inf)
    found = pgd_found | cw_found
    point = torch.where(per_example(d_cw < d_pgd), cw_point, pgd_point)
    point = torch.where(per_example(found), point, x)
    delta = point - x
    t_lo, t_hi = torch.zeros(x.shape[0], dtype=x.dtype), torch.ones(x.shape[0], dtype=x.dtype)
    for _ in range(refine_steps):
        mid = (t_lo + t_hi) / 2
        is_wrong = wrong(x + per_example(mid) * delta)
        t_lo, t_hi = torch.where(is_wrong, t_lo, mid), torch.where(is_wrong, mid, t_hi)
    moved = (x + per_example(t_hi) * delta).clamp(0, 1)
    point = torch.where(per_example(found & (t_hi < 1)), moved, point)
    return point, found


def relex(
    model, x, target, iterations, samples, m0=None, noises=None, lam1=1e-4, lam2=1.0, mu=0.99
):
    """RelEx mask optimisation (SGD, momentum 0.99, unit-L2 gradient per example).

    The L1 term is written ``Σ m`` (``m`` stays in [0, 1]): its gradient is λ1 at ``m = 0`` as
    well, as JAX differentiates ``jnp.abs`` there (PyTorch's ``abs`` gives 0 at 0, which
    changes the normalised step once masks touch 0)."""
    b = x.shape[0]
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(b, 1, 1, 1, 1)
    m = torch.rand_like(x) * 0.01 if m0 is None else m0.clone()
    v = torch.zeros_like(m)
    t = target.repeat_interleave(samples)
    for i in range(iterations):
        noise = torch.randn((b, samples, *x.shape[1:])) if noises is None else noises[i]
        noisy = x[:, None] + 0.1 * span * noise
        m = m.detach().requires_grad_(True)
        fg = (noisy * m[:, None]).flatten(0, 1)
        bg = (noisy * (1 - m)[:, None]).flatten(0, 1)
        lp_fg = F.log_softmax(model(fg), -1).gather(1, t[:, None]).view(b, samples)
        lp_bg = F.log_softmax(model(bg), -1).gather(1, t[:, None]).view(b, samples)
        loss = (
            -lp_fg.mean(1)
            + lam1 * m.flatten(1).sum(1)  # = Σ|m| as m >= 0; gradient λ1 also at m = 0
            - lam2 * torch.log(1 - lp_bg.exp() + 1e-7).mean(1)
        ).sum()
        (g,) = torch.autograd.grad(loss, m)
        g = g / (g.flatten(1).norm(dim=1).view(b, 1, 1, 1) + 1e-12)
        v = mu * v + g
        m = (m.detach() - 0.1 * v).clamp(0, 1)
    return m.detach()


def torch_case(name: str, model, opt, x, y, cw_steps: int):
    """A zero-argument callable running one case in PyTorch eager."""
    if name.startswith("pgd") and not name.endswith("step"):
        steps = int(name[3:])
        return lambda: pgd_linf(model, x, y, EPS, steps, torch.empty_like(x).uniform_(-EPS, EPS))
    if name == "cw_l2":
        return lambda: cw_l2(model, x, y, cw_steps, CW_ROUNDS)
    if name == "boundary_search":
        eps = attacks.DEFAULT_EPSILONS
        return lambda: boundary_search(
            model, x, y, eps, BOUNDARY_PGD_STEPS, BOUNDARY_CW_STEPS, CW_ROUNDS,
            BOUNDARY_REFINE_STEPS, _l2_start,
        )  # fmt: skip
    if name == "relex":
        return lambda: relex(model, x, y, 10, RELEX_SAMPLES)

    def step():
        if name == "pgd_at_step":
            x_adv = pgd_linf(model, x, y, EPS, 10, torch.empty_like(x).uniform_(-EPS, EPS))
            loss = F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y)
        else:
            x_adv = trades_attack(model, x, EPS, 10, torch.randn_like(x))
            log_p = F.log_softmax(model(x), -1)
            kl = F.kl_div(
                F.log_softmax(model(x_adv), -1), log_p, log_target=True, reduction="batchmean"
            )
            loss = F.cross_entropy(model(x), y) + 6.0 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def jax_case(name: str, apply_fn, tx, cw_steps: int):
    """``fn(params, x, y, key)`` running one case in jaxinterp (to be jitted)."""
    if name.startswith("pgd") and not name.endswith("step"):
        attack = attacks.pgd(epsilon=EPS, num_steps=int(name[3:]))
        return lambda p, x, y, k: attack(apply_fn, p, x, y, key=k)
    if name == "cw_l2":
        cw = attacks.carlini_wagner_l2(num_steps=cw_steps, binary_search_steps=CW_ROUNDS)
        return lambda p, x, y, k: cw(apply_fn, p, x, y)
    if name == "boundary_search":
        search = _jax_boundary(BOUNDARY_PGD_STEPS, BOUNDARY_CW_STEPS, CW_ROUNDS)
        return lambda p, x, y, k: search(apply_fn, p, x, y, key=k)
    if name == "relex":
        explain = attribution.relex(num_iterations=10, num_samples=RELEX_SAMPLES)
        return lambda p, x, y, k: explain(apply_fn, p, x, y, key=k)
    penalty = (
        regularizers.combine(at=(1.0, regularizers.adversarial_training(epsilon=EPS)))
        if name == "pgd_at_step"
        else regularizers.combine(kl=(6.0, regularizers.trades(epsilon=EPS)))
    )
    step = training.make_train_step(apply_fn, tx, penalty=penalty)

    def run(p, x, y, k):
        return step(training.create_train_state(p, tx, key=k), {"image": x, "label": y})

    return run


def _jax_boundary(pgd_steps: int, cw_steps: int, cw_rounds: int):
    return attacks.boundary_search(
        pgd_steps=pgd_steps,
        cw_steps=cw_steps,
        cw_binary_search_steps=cw_rounds,
        refine_steps=BOUNDARY_REFINE_STEPS,
    )


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))


def check_case(name: str, setup, tmodel, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Runs both sides on the same inputs (and jaxinterp's random draws); raises on mismatch.

    Signed steps are discontinuous where a gradient entry is ~0, so PGD results are compared
    by the share of entries that agree (≥ 99%, float32). The other cases are compared by
    relative error in float32, and, where float32 round-off grows along the iterations
    past :data:`checks.RTOL32`, in float64 against :data:`checks.RTOL64` (as the penalties).
    """
    key = jax.random.PRNGKey(3)
    if name.startswith("pgd") and not name.endswith("step"):
        return _check_pgd(int(name[3:]), setup, tmodel, x, y, key)
    errors = {"cw_l2": _cw_errors, "boundary_search": _boundary_errors, "relex": _relex_errors}
    errors = errors.get(name, _penalty_errors)

    def in_dtype(dtype) -> dict[str, float]:
        params, xj, tmod = checks._in_dtype(dtype, setup, tmodel, x)
        return errors(name, setup.model.apply_fn, params, tmod, xj, y, key)

    return checks._twice(in_dtype, name)


def _inputs(xj, y):
    xn = np.asarray(xj)
    return xn, jnp.asarray(y), tm.nchw(xn), torch.from_numpy(np.asarray(y)).long()


def _check_pgd(steps, setup, tmodel, x, y, key) -> dict[str, Any]:
    """Share of ``x_adv`` entries that differ: ≤ 1% in float32, else ≤ 0.1% in float64.

    A sign step flips where a gradient entry is ~0, and one flip changes the later gradients
    a little, so float32 round-off (which XLA:CPU's fused kernels and PyTorch's differ in)
    spreads; float64 leaves almost no entry that close to 0."""

    def disagreement(dtype) -> float:
        params, xj, tmod = checks._in_dtype(dtype, setup, tmodel, x)
        xn, yj, xt, yt = _inputs(xj, y)
        attack = attacks.pgd(epsilon=EPS, num_steps=steps)
        ours = np.asarray(attack(setup.model.apply_fn, params, xj, yj, key=key))
        delta0 = tm.nchw(np.asarray(jax.random.uniform(key, x.shape, dtype, -EPS, EPS)))
        theirs = tm.nhwc(pgd_linf(tmod, xt, yt, EPS, steps, delta0))
        return float(np.mean(np.abs(ours - theirs) > 1e-5))

    d32 = disagreement(jnp.float32)
    if d32 <= 0.01:
        return {
            "status": "ok",
            "dtype": "float32",
            "max_rel_err": d32,
            "errors": {"disagreeing_share": d32},
        }
    with jax.enable_x64(True):
        d64 = disagreement(jnp.float64)
    if d64 > 0.001:
        raise checks.ValueMismatch(f"pgd{steps}: {d64:.4f} of the entries differ in float64")
    return {
        "status": f"ok (float64; float32 differs at {d32:.3f})",
        "dtype": "float64",
        "max_rel_err": d64,
        "float32_max_rel_err": d32,
        "errors": {"disagreeing_share": d64},
    }


def _cw_errors(name, f, params, tmodel, xj, y, key) -> dict[str, float]:
    xn, yj, xt, yt = _inputs(xj, y)
    adv, ok = attacks.carlini_wagner_l2(num_steps=20, binary_search_steps=2)(f, params, xj, yj)
    t_adv, t_ok = cw_l2(tmodel, xt, yt, 20, 2)
    d_ours = np.sqrt(np.sum((np.asarray(adv) - xn) ** 2, axis=(1, 2, 3)))
    d_theirs = np.sqrt(np.sum((tm.nhwc(t_adv) - xn) ** 2, axis=(1, 2, 3)))
    return {
        "success_mismatch": float(np.mean(np.asarray(ok) != t_ok.numpy())),
        "distance": checks.rel_err(d_ours, d_theirs),
    }


def _boundary_errors(name, f, params, tmodel, xj, y, key) -> dict[str, float]:
    """From ``x`` (no random start), 5 PGD steps per radius, CW 2 × 20, 10 bisections."""
    xn, yj, xt, yt = _inputs(xj, y)
    ours = _jax_boundary(5, 20, 2)(f, params, xj, yj)
    eps = attacks.DEFAULT_EPSILONS
    point, found = boundary_search(tmodel, xt, yt, eps, 5, 20, 2, BOUNDARY_REFINE_STEPS, None)
    both = np.asarray(ours.found) & found.numpy()
    d_ours = np.linalg.norm((np.asarray(ours.x_adv) - xn).reshape(len(xn), -1), axis=1)
    d_theirs = np.linalg.norm((tm.nhwc(point) - xn).reshape(len(xn), -1), axis=1)
    return {
        "found_mismatch": float(np.mean(np.asarray(ours.found) != found.numpy())),
        "distance": checks.rel_err(d_ours[both], d_theirs[both]),
    }


def _relex_errors(name, f, params, tmodel, xj, y, key) -> dict[str, float]:
    xn, yj, xt, yt = _inputs(xj, y)
    b, n, iters, dtype = xn.shape[0], 4, 3, xj.dtype
    ours = attribution.relex(num_iterations=iters, num_samples=n)(f, params, xj, yj, key=key)
    # jaxinterp's draws: per example fold_in(key, j), split into (init, noise).
    keys = [jax.random.split(jax.random.fold_in(key, j)) for j in range(b)]
    m0 = np.stack([jax.random.uniform(k[0], xn.shape[1:], dtype, 0.0, 0.01) for k in keys])
    noises = [
        torch.from_numpy(
            np.stack(
                [
                    np.transpose(
                        np.asarray(
                            jax.random.normal(
                                jax.random.fold_in(k[1], i), (n, *xn.shape[1:]), dtype
                            )
                        ),
                        (0, 3, 1, 2),
                    )
                    for k in keys
                ]
            )
        )
        for i in range(iters)
    ]
    theirs = relex(tmodel, xt, yt, iters, n, m0=tm.nchw(m0), noises=noises)
    return {"mask": checks.rel_err(np.asarray(ours), tm.nhwc(theirs))}


def _penalty_errors(name, f, params, tmodel, xj, y, key) -> dict[str, float]:
    xn, yj, xt, yt = _inputs(xj, y)
    if name == "pgd_at_step":
        ours, _ = regularizers.adversarial_training(epsilon=EPS)(f, params, xj, yj, key=key)
        delta0 = tm.nchw(np.asarray(jax.random.uniform(key, xn.shape, xj.dtype, -EPS, EPS)))
        x_adv = pgd_linf(tmodel, xt, yt, EPS, 10, delta0)
        with torch.no_grad():
            theirs = F.cross_entropy(tmodel(x_adv), yt)
    else:
        ours, _ = regularizers.trades(epsilon=EPS)(f, params, xj, yj, key=key)
        noise = tm.nchw(np.asarray(jax.random.normal(key, xn.shape, xj.dtype)))
        z = trades_attack(tmodel, xt, EPS, 10, noise)
        with torch.no_grad():
            log_p = F.log_softmax(tmodel(xt), -1)
            theirs = F.kl_div(
                F.log_softmax(tmodel(z), -1), log_p, log_target=True, reduction="batchmean"
            )
    return {"penalty": checks.rel_err(np.asarray(float(theirs)), np.asarray(float(ours)))}
