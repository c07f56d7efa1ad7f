"""The benchmarked models in PyTorch, holding the same weights as the JAX params.

JAX (Flax Linen) stores conv kernels HWIO and dense kernels ``[in, out]``, and its models
take NHWC inputs and flatten NHWC activations; PyTorch stores conv weights OIHW and linear
weights ``[out, in]``, takes NCHW inputs and flattens NCHW. So conv kernels are transposed,
dense kernels transposed, and the rows of the first dense kernel after a flatten are
permuted from ``(h, w, c)`` to ``(c, h, w)`` order; inputs go NHWC -> NCHW. Gradients go
back the same way, so they can be compared leaf by leaf with JAX's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["TorchLeNet", "TorchMLP", "build", "grads_to_jax", "nchw", "nhwc"]


def nchw(x: np.ndarray) -> torch.Tensor:
    """NHWC numpy -> NCHW float32 torch (contiguous)."""
    return torch.from_numpy(np.array(np.transpose(np.asarray(x), (0, 3, 1, 2)), order="C"))


def nhwc(t: torch.Tensor) -> np.ndarray:
    """NCHW torch -> NHWC numpy."""
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def _pooled(n: int) -> int:
    """Size after a 2×2 max-pool with 'SAME' padding (``ceil_mode=True``)."""
    return (n + 1) // 2


class TorchLeNet(nn.Module):
    """``jaxinterp.models.cnn.LeNet`` in PyTorch: 4 convs 3×3 same, 2×2 max-pools, dense 256."""

    def __init__(self, in_hw: tuple[int, int, int], beta: float, num_classes: int = 10):
        super().__init__()
        h, w, c = in_hw
        chans = (32, 32, 64, 64)
        ins = (c, *chans[:-1])
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 3, padding=1) for i, o in zip(ins, chans, strict=True)
        )
        h4, w4 = _pooled(_pooled(h)), _pooled(_pooled(w))
        self.flat_hwc = (h4, w4, chans[-1])
        self.fc1 = nn.Linear(h4 * w4 * chans[-1], 256)
        self.fc2 = nn.Linear(256, num_classes)
        self.act = nn.Softplus(beta=beta)
        # Identity modules at jaxinterp's taps (after each conv's softplus, before the pool), so
        # that layer methods (Captum's LayerGradCam) can hook the layer jaxinterp names "convI".
        self.taps = nn.ModuleDict({f"conv{i}": nn.Identity() for i in range(1, 5)})

    def forward(self, x: torch.Tensor, features: bool = False) -> Any:
        """Logits ``[B, K]`` of NCHW ``x``; with ``features`` also ``{name: activation}``."""
        feats = {}
        h = x
        for i, conv in enumerate(self.convs, start=1):
            h = self.taps[f"conv{i}"](self.act(conv(h)))
            feats[f"conv{i}"] = h
            if i % 2 == 0:
                h = F.max_pool2d(h, 2, ceil_mode=True)
        h = self.act(self.fc1(h.flatten(1)))
        feats["fc1"] = h
        logits = self.fc2(h)
        return (logits, feats) if features else logits


class TorchMLP(nn.Module):
    """``jaxinterp.models.mlp.MLP`` (hidden 256, 256) in PyTorch, on NCHW inputs."""

    def __init__(self, in_hw: tuple[int, int, int], beta: float, num_classes: int = 10):
        super().__init__()
        self.flat_hwc = tuple(in_hw)
        widths = (int(np.prod(in_hw)), 256, 256)
        self.hidden = nn.ModuleList(
            nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)
        )
        self.out = nn.Linear(256, num_classes)
        self.act = nn.Softplus(beta=beta)

    def forward(self, x: torch.Tensor, features: bool = False) -> Any:
        """Logits ``[B, K]`` of NCHW ``x``; with ``features`` also ``{name: activation}``."""
        feats = {}
        h = x.flatten(1)
        for i, layer in enumerate(self.hidden, start=1):
            h = self.act(layer(h))
            feats[f"dense{i}"] = h
        logits = self.out(h)
        return (logits, feats) if features else logits


def _hwc_rows_to_chw(kernel: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    """Dense kernel ``[h·w·c, out]`` in NHWC-flatten order -> torch weight ``[out, c·h·w]``."""
    h, w, c = hwc
    return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1).T


def _chw_cols_to_hwc(weight: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`_hwc_rows_to_chw`."""
    h, w, c = hwc
    return weight.T.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)


def _layout(model: nn.Module) -> list[tuple[str, str, Callable, Callable]]:
    """(torch name, JAX path, JAX -> torch, torch -> JAX) for each weight."""
    conv = (lambda k: k.transpose(3, 2, 0, 1), lambda t: t.transpose(2, 3, 1, 0))
    dense = (lambda k: k.T, lambda t: t.T)
    first = (
        lambda k: _hwc_rows_to_chw(k, model.flat_hwc),
        lambda t: _chw_cols_to_hwc(t, model.flat_hwc),
    )
    same = (lambda b: b, lambda b: b)
    if isinstance(model, TorchLeNet):
        layers = [(f"convs.{i}", f"Conv_{i}", conv) for i in range(4)]
        layers += [("fc1", "Dense_0", first), ("fc2", "Dense_1", dense)]
    else:
        layers = [("hidden.0", "Dense_0", first), ("hidden.1", "Dense_1", dense)]
        layers += [("out", "Dense_2", dense)]
    out = []
    for tname, jname, (fwd, inv) in layers:
        out.append((f"{tname}.weight", f"{jname}/kernel", fwd, inv))
        out.append((f"{tname}.bias", f"{jname}/bias", *same))
    return out


def _get(tree: Any, path: str) -> Any:
    for part in path.split("/"):
        tree = tree[part]
    return tree


def build(model_name: str, jax_params: Any, in_hw: tuple[int, ...], beta: float) -> nn.Module:
    """The PyTorch twin of ``models.get_model(model_name, ...)`` holding ``jax_params``."""
    cls = {"cnn": TorchLeNet, "mlp": TorchMLP}[model_name]
    model = cls(tuple(in_hw), beta)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for tname, jpath, fwd, _ in _layout(model):
            value = np.array(fwd(np.asarray(_get(jax_params, jpath))), np.float32, order="C")
            if named[tname].shape != value.shape:
                raise ValueError(f"{tname}: torch {tuple(named[tname].shape)} vs {value.shape}")
            named[tname].copy_(torch.from_numpy(value))
    return model


def grads_to_jax(model: nn.Module, grads: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Torch gradients by parameter name -> ``{"Conv_0/kernel": array in JAX layout, ...}``."""
    return {
        jpath: np.asarray(inv(grads[tname].detach().numpy()))
        for tname, jpath, _, inv in _layout(model)
    }
