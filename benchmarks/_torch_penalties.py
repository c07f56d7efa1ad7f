"""The penalties of ``jaxinterp.regularizers`` written the way the reference code writes them.

``EAGER``: PyTorch eager, ``torch.autograd.grad(..., create_graph=True)`` (double backward);
``FUNC``: ``torch.func`` transforms (``grad`` of ``grad``, ``jvp`` of ``grad``, ``jvp``).
Both compute, for the same model, batch and random draws, the value of the jaxinterp
penalty with its default hyperparameters (read from the factories' signatures):

* ``input_gradient_norm``: ``mean_b ‖∇ₓ CE_b‖²``;
* ``gradient_alignment``: ``λ_l2 · mean ‖g − g'‖² + λ_cos · mean (1 − cos(g, g'))/2``,
  ``g = ∇ₓ f_y(x)`` detached (``detach_source``), ``g' = ∇ₓ f_y(x + δ)``,
  ``δ ~ U[−ε, ε]``;
* ``hessian_norm``: ``Σ (H v)² / B``, ``H = ∇²ₓ Σ_b f_{y_b}``, one probe ``v ~ N(0, I)``;
* ``activation_sensitivity`` (estimator ``jvp``, all layers, 1 probe):
  ``Σ_l mean_b ‖J_l v‖² / n_l``, ``v ~ N(0, I)``; eager uses the double-vjp trick
  ``J v = ∇_u ⟨Jᵀ u, v⟩``;
* ``curvature`` (CURE): ``mean_b ‖∇ₓCE(x + z) − ∇ₓCE(x)‖²``, ``z = h · sign(g)/‖sign(g)‖``.

A penalty takes NCHW ``x``, labels ``y`` and ``noise`` (``δ`` or ``v``, NCHW), drawn with
torch's RNG when ``None`` (as in a training loop).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn import functional as F

from jaxinterp import regularizers

__all__ = ["EAGER", "FUNC", "NOISE", "eager_value_and_grad", "func_value_and_grad", "make_step"]


def _default(factory: Callable, name: str) -> Any:
    return inspect.signature(factory).parameters[name].default


ALIGN = {k: _default(regularizers.gradient_alignment, k) for k in ("lambda_l2", "lambda_cos")}
EPSILON = _default(regularizers.gradient_alignment, "epsilon")
CURE_H = _default(regularizers.curvature, "h")
NOISE = {"gradient_alignment": "delta", "hessian_norm": "probe", "activation_sensitivity": "probe"}
"""Which penalties draw noise: ``delta`` ~ U[−ε, ε], ``probe`` ~ N(0, I), shaped like x."""


def draw_noise(name: str, x: torch.Tensor) -> torch.Tensor | None:
    """Torch-RNG noise for a penalty, or ``None`` if it needs none."""
    kind = NOISE.get(name)
    if kind == "delta":
        return (torch.rand_like(x) * 2.0 - 1.0) * EPSILON
    return torch.randn_like(x) if kind == "probe" else None


def _sq(g: torch.Tensor) -> torch.Tensor:
    return g.pow(2).flatten(1).sum(1)


def _logit_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, y[:, None]).sum()


def _alignment(g: torch.Tensor, g_near: torch.Tensor) -> torch.Tensor:
    a, b = g.flatten(1), g_near.flatten(1)
    l2 = (a - b).pow(2).sum(1).mean()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return ALIGN["lambda_l2"] * l2 + ALIGN["lambda_cos"] * ((1.0 - cos) / 2.0).mean()


def _cure_step(g: torch.Tensor) -> torch.Tensor:
    s = torch.sign(g)
    norm = s.flatten(1).norm(dim=1).clamp_min(1e-12)
    return (CURE_H * s / norm.view(-1, *([1] * (g.dim() - 1)))).detach()


# --- eager: (model, x, y, noise) -> (penalty, clean logits for the cross-entropy) ---------


def _eager_ign(model, x, y, noise):
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x, create_graph=True)
    return _sq(g).mean(), logits


def _eager_align(model, x, y, delta):
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (g,) = torch.autograd.grad(_logit_sum(logits, y), x, retain_graph=True)  # detached source
    near = (x.detach() + delta).requires_grad_(True)
    (g_near,) = torch.autograd.grad(_logit_sum(model(near), y), near, create_graph=True)
    return _alignment(g, g_near), logits


def _eager_hessian(model, x, y, v):
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (g,) = torch.autograd.grad(_logit_sum(logits, y), x, create_graph=True)
    (hv,) = torch.autograd.grad(g, x, grad_outputs=v, create_graph=True)  # H v, double backward
    return hv.pow(2).sum() / x.shape[0], logits


def _eager_act_sens(model, x, y, v):
    x = x.detach().requires_grad_(True)
    logits, feats = model(x, features=True)
    acts = list(feats.values())
    us = [torch.zeros_like(a, requires_grad=True) for a in acts]
    (jtu,) = torch.autograd.grad(acts, x, grad_outputs=us, create_graph=True)  # Jᵀu
    jvs = torch.autograd.grad(jtu, us, grad_outputs=v, create_graph=True)  # J v = ∇_u ⟨Jᵀu, v⟩
    total = sum(_sq(jv).mean() / a[0].numel() for jv, a in zip(jvs, acts, strict=True))
    return total, logits


def _eager_cure(model, x, y, noise):
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x, create_graph=True)
    near = (x.detach() + _cure_step(g)).requires_grad_(True)
    ce_near = F.cross_entropy(model(near), y, reduction="sum")
    (g_near,) = torch.autograd.grad(ce_near, near, create_graph=True)
    return _sq(g_near - g).mean(), logits


EAGER = {
    "input_gradient_norm": _eager_ign,
    "gradient_alignment": _eager_align,
    "hessian_norm": _eager_hessian,
    "activation_sensitivity": _eager_act_sens,
    "curvature": _eager_cure,
}


# --- torch.func: (model, params, x, y, noise, source) -> penalty --------------------------


def _call(model: nn.Module, params: dict, z: torch.Tensor, features: bool = False) -> Any:
    return functional_call(model, params, (z,), {"features": features})


def _func_ign(model, params, x, y, noise, source):
    g = grad(lambda z: F.cross_entropy(_call(model, params, z), y, reduction="sum"))(x)
    return _sq(g).mean()


def _func_align(model, params, x, y, delta, source):
    g_near = grad(lambda z: _logit_sum(_call(model, params, z), y))(x + delta)
    return _alignment(source, g_near)


def _func_hessian(model, params, x, y, v, source):
    grad_s = grad(lambda z: _logit_sum(_call(model, params, z), y))
    hv = jvp(grad_s, (x,), (v,))[1]  # forward-over-reverse
    return hv.pow(2).sum() / x.shape[0]


def _func_act_sens(model, params, x, y, v, source):
    jvs = jvp(lambda z: _call(model, params, z, features=True)[1], (x,), (v,))[1]
    return sum(_sq(jv).mean() / jv[0].numel() for jv in jvs.values())


def _func_cure(model, params, x, y, noise, source):
    grad_ce = grad(lambda z: F.cross_entropy(_call(model, params, z), y, reduction="sum"))
    g = grad_ce(x)
    return _sq(grad_ce(x + _cure_step(g)) - g).mean()


FUNC = {
    "input_gradient_norm": _func_ign,
    "gradient_alignment": _func_align,
    "hessian_norm": _func_hessian,
    "activation_sensitivity": _func_act_sens,
    "curvature": _func_cure,
}


def _source(name: str, model: nn.Module, params: dict, x: torch.Tensor, y: torch.Tensor):
    """The detached source gradient of the alignment, computed outside the params-gradient."""
    if name != "gradient_alignment":
        return None
    return grad(lambda z: _logit_sum(_call(model, params, z), y))(x)


def _detached(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters as plain tensors sharing storage (optimizer updates show through)."""
    return {k: p.detach() for k, p in model.named_parameters()}


def eager_value_and_grad(name, model, x, y, noise) -> tuple[float, dict[str, torch.Tensor]]:
    """The eager penalty's value and its gradient w.r.t. each named parameter."""
    value, _ = EAGER[name](model, x, y, noise)
    names, params = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(value, params, allow_unused=True, materialize_grads=True)
    return value.item(), dict(zip(names, grads, strict=True))


def func_value_and_grad(name, model, x, y, noise) -> tuple[float, dict[str, torch.Tensor]]:
    """The torch.func penalty's value and its gradient w.r.t. each named parameter."""
    params = _detached(model)
    source = _source(name, model, params, x, y)
    grads, value = torch.func.grad_and_value(lambda p: FUNC[name](model, p, x, y, noise, source))(
        params
    )
    return value.item(), grads


def make_step(
    name: str, variant: str, model: nn.Module, opt: torch.optim.Optimizer, x, y, weight: float
) -> Callable[[], torch.Tensor]:
    """One train step, CE + weight · penalty, backward, Adam: ``step() -> loss``.

    Fresh noise is drawn with torch's RNG every step, as a training loop does.
    """
    if variant == "eager":

        def eager_step():
            opt.zero_grad(set_to_none=True)
            penalty, logits = EAGER[name](model, x, y, draw_noise(name, x))
            loss = F.cross_entropy(logits, y) + weight * penalty
            loss.backward()
            opt.step()
            return loss.detach()

        return eager_step

    params = _detached(model)

    def loss_fn(p, noise, source):
        return F.cross_entropy(_call(model, p, x), y) + weight * FUNC[name](
            model, p, x, y, noise, source
        )

    def func_step():
        source = _source(name, model, params, x, y)
        grads, loss = torch.func.grad_and_value(loss_fn)(params, draw_noise(name, x), source)
        for k, p in model.named_parameters():
            p.grad = grads[k]
        opt.step()
        return loss.detach()

    return func_step
