"""ResNet-18 for small (CIFAR-sized) images, with GroupNorm instead of BatchNorm.

BatchNorm couples the examples of a batch: in training mode each example's output depends on
the batch mean and variance, so the input gradient of one example's loss picks up terms from
every other example, and the model carries mutable batch statistics. Both are unacceptable for
explanation regularisers, which need exact per-example input gradients and Hessians. GroupNorm
normalises each example on its own, so the Jacobian between different examples is exactly zero
and the parameters are the only state.

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016;
    Wu and He, "Group Normalization", ECCV 2018.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax

from jaxinterp.core import checks
from jaxinterp.models._tap import tap
from jaxinterp.models.activations import check_model_config, get_activation
from jaxinterp.models.conv import loop_safe_conv

# (channel multiplier, stride of the first block) for the four stages.
_STAGES = ((1, 1), (2, 2), (4, 2), (8, 2))


def _group_norm(channels: int, num_groups: int, name: str) -> nn.GroupNorm:
    """GroupNorm whose group count divides ``channels``.

    Uses ``gcd(num_groups, channels)`` groups, i.e. ``min(32, channels)`` for the usual
    power-of-two widths.
    """
    return nn.GroupNorm(num_groups=math.gcd(num_groups, channels), name=name)


class BasicBlock(nn.Module):
    """Two-convolution residual block (ResNet-18/34 style), GroupNorm variant.

    ``act(GN(conv3x3(act(GN(conv3x3_s(x))))) + shortcut(x))`` where the shortcut is the
    identity, or a strided 1x1 convolution followed by GroupNorm when the stride or channel
    count changes.

    Attributes:
        channels: Output channels.
        strides: Stride of the first convolution (and of the projection shortcut).
        act: Elementwise activation.
        num_groups: Maximum number of GroupNorm groups.
        conv: The convolution (see :class:`ResNet18`).
    """

    channels: int
    strides: int
    act: Callable[[jax.Array], jax.Array]
    num_groups: int = 32
    conv: Callable[..., jax.Array] = loop_safe_conv

    def __post_init__(self) -> None:
        checks.integer("channels", self.channels)
        checks.integer("strides", self.strides)
        checks.function("act", self.act)
        checks.integer("num_groups", self.num_groups)
        checks.function("conv", self.conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block.

        Args:
            x: Activations of shape ``[B, H, W, C_in]``.

        Returns:
            Activations of shape ``[B, ceil(H / s), ceil(W / s), channels]``.
        """
        s = (self.strides, self.strides)
        conv = functools.partial(
            nn.Conv, self.channels, use_bias=False, conv_general_dilated=self.conv
        )
        y = conv((3, 3), strides=s, padding="SAME", name="conv1")(x)
        y = self.act(_group_norm(self.channels, self.num_groups, "norm1")(y))
        y = conv((3, 3), padding="SAME", name="conv2")(y)
        y = _group_norm(self.channels, self.num_groups, "norm2")(y)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.channels:
            shortcut = conv((1, 1), strides=s, name="conv_shortcut")(x)
            shortcut = _group_norm(self.channels, self.num_groups, "norm_shortcut")(shortcut)
        return self.act(y + shortcut)


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 with GroupNorm.

    Architecture: 3x3 conv stem (``width`` channels, stride 1, no max-pool) -> GN -> act,
    then four stages of two :class:`BasicBlock` s with ``width * (1, 2, 4, 8)`` channels
    (64/128/256/512 by default) and strides 1/2/2/2, global average pooling and a dense layer.
    About 11.2M parameters with the defaults and 10 classes.

    Tapped layers (:func:`~jaxinterp.models.tap`: recorded and open to an offset) for an
    input ``[B, H, W, C]``:

    * ``"stem"``: ``[B, H, W, width]``
    * ``"layer1"``: ``[B, H, W, width]``
    * ``"layer2"``: ``[B, H/2, W/2, 2 width]``
    * ``"layer3"``: ``[B, H/4, W/4, 4 width]``
    * ``"layer4"``: ``[B, H/8, W/8, 8 width]`` (sizes rounded up; 8x8 inputs give 1x1)

    Attributes:
        num_classes: Number of output logits (>= 2).
        activation: ``"relu"`` or ``"softplus"``.
        beta: Softplus sharpness β > 0.
        width: Channels of the stem and first stage; 64 is the standard ResNet-18.
        num_groups: Maximum GroupNorm groups; each norm uses ``gcd(num_groups, channels)``.
        conv: The convolution, ``lax.conv_general_dilated``'s signature; the default
            :func:`~jaxinterp.models.loop_safe_conv` keeps derivatives fast inside ``lax``
            loops on CPU (same values as ``lax.conv_general_dilated``).

    References:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016;
        Wu and He, "Group Normalization", ECCV 2018.
    """

    num_classes: int
    activation: str = "softplus"
    beta: float = 1.0
    width: int = 64
    num_groups: int = 32
    conv: Callable[..., jax.Array] = loop_safe_conv

    def __post_init__(self) -> None:
        check_model_config(self.num_classes, self.activation, self.beta)
        checks.integer("width", self.width)
        checks.integer("num_groups", self.num_groups)
        checks.function("conv", self.conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[B, num_classes]`` of images ``x [B, H, W, C]`` (float32)."""
        x = checks.array(x, "x", ndims=(4,), image=True)
        act = get_activation(self.activation, beta=self.beta)
        width, groups = int(self.width), int(self.num_groups)
        h = nn.Conv(
            width,
            (3, 3),
            padding="SAME",
            use_bias=False,
            conv_general_dilated=self.conv,
            name="stem_conv",
        )(x)
        h = act(_group_norm(width, groups, "stem_norm")(h))
        h = tap(self, "stem", h)
        for stage, (mult, stride) in enumerate(_STAGES, start=1):
            for j in range(2):
                h = BasicBlock(
                    channels=width * mult,
                    strides=stride if j == 0 else 1,
                    act=act,
                    num_groups=groups,
                    conv=self.conv,
                    name=f"layer{stage}_block{j + 1}",
                )(h)
            h = tap(self, f"layer{stage}", h)
        h = h.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(h)
