"""Classifiers for faithful and robust explanations.

All models are exposed through the plain-function boundary ``apply_fn(params, x) -> logits``
(see :mod:`jaxinterp.models.model`); :mod:`jaxinterp.models.adapters` wraps NNX, Equinox
and Haiku models into the same :class:`Model`. The built-in Linen architectures use smooth
activations by default (β-softplus) and never mix examples (no BatchNorm), so per-example
input gradients and Hessians of a batch are exact.
"""

from jaxinterp.models.activations import (
    ACTIVATIONS,
    check_beta,
    check_model_config,
    get_activation,
    softplus_beta,
)
from jaxinterp.models.adapters import from_equinox, from_haiku, from_nnx
from jaxinterp.models.cnn import LeNet
from jaxinterp.models.conv import fused_conv_transposes, loop_convolutions, loop_safe_conv
from jaxinterp.models.mlp import MLP
from jaxinterp.models.model import (
    MODELS,
    ApplyFn,
    FeaturesFn,
    InitFn,
    LayerFn,
    Model,
    Params,
    from_linen,
    get_model,
)
from jaxinterp.models.resnet import BasicBlock, ResNet18

from ._surrogate import softplus_surrogate
from ._tap import tap, tapped

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "MLP",
    "ApplyFn",
    "BasicBlock",
    "FeaturesFn",
    "InitFn",
    "LayerFn",
    "LeNet",
    "Model",
    "Params",
    "ResNet18",
    "check_beta",
    "check_model_config",
    "from_equinox",
    "from_haiku",
    "from_linen",
    "from_nnx",
    "get_activation",
    "get_model",
    "fused_conv_transposes",
    "loop_convolutions",
    "loop_safe_conv",
    "softplus_beta",
    "softplus_surrogate",
    "tap",
    "tapped",
]
