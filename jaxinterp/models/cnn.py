"""LeNet-style convolutional classifier.

This is the small CNN used for CIFAR-10 by Joo et al. (AAAI 2023): two blocks of two 3x3
convolutions followed by 2x2 max-pooling, then one hidden dense layer. Max-pooling is piecewise
selection, hence differentiable almost everywhere; with the default ``softplus`` activation all
other operations are smooth. Everything is per-example, so examples in a batch never interact.

References:
    Joo et al., "Towards More Robust Interpretation via Local Gradient Alignment",
    AAAI 2023.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.models._tap import tap, tapped
from jaxinterp.models.activations import check_model_config, get_activation
from jaxinterp.models.conv import loop_safe_conv


def _larger(u: jax.Array, v: jax.Array) -> jax.Array:
    """``max(u, v)`` as a selection: ``u`` where ``u >= v`` or ``u`` is NaN, else ``v``."""
    return jnp.where((u >= v) | jnp.isnan(u), u, v)


def _max_pool(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 and 'SAME' padding.

    'SAME' padding keeps odd spatial sizes usable (e.g. 4 -> 2 -> 1 on 8x8 digits and
    7 -> 4 on 28x28 inputs after one pool). Written as two pairwise selections over a
    reshaped window (the larger row, then the larger column) rather than ``reduce_window``:
    the same values (NaN propagates), but its reverse pass is elementwise instead of XLA's
    ``select_and_scatter`` (about 10x faster on CPU), and its forward-mode derivative avoids
    ``select_and_gather``, which matters for the higher-order penalties. Nor is it a ``max``
    reduction, whose derivative (JAX's rule) divides by the number of inputs equal to the
    computed maximum: XLA may compute the pooled activations twice, in two fused loops that
    round differently, and then no input equals the maximum (0 / 0 = NaN in every
    derivative; seen with XLA:CPU at optimization level 0). A selection's derivative takes
    no count. At exact ties the derivative goes to the first input in row-major order (as in
    PyTorch's ``max_pool2d``). On a 2-core Zen 4 (batch 128, 32x32x32 softplus activations)
    the forward pass took 2.5 against 5.4 ms, forward-mode 4.5 against 10.5 ms.

    Args:
        x: Activations of shape ``[B, H, W, C]``.

    Returns:
        Array of shape ``[B, ceil(H / 2), ceil(W / 2), C]``.
    """
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    x = x.reshape(b, (h + 1) // 2, 2, (w + 1) // 2, 2, c)
    cols = _larger(x[:, :, 0], x[:, :, 1])  # [B, H2, W2, 2, C]: the larger row
    return _larger(cols[:, :, :, 0], cols[:, :, :, 1])


class LeNet(nn.Module):
    """LeNet-style CNN of Joo et al. (AAAI 2023).

    Architecture (all convolutions 3x3, stride 1, 'SAME' padding)::

        conv(32) -> act -> conv(32) -> act -> maxpool 2
        -> conv(64) -> act -> conv(64) -> act -> maxpool 2
        -> flatten -> dense(256) -> act -> dense(num_classes)

    Tapped layers (:func:`~jaxinterp.models.tap`: recorded and open to an offset), for an input
    ``[B, H, W, C]`` with ``H2 = ceil(H / 2)`` and ``H4 = ceil(H2 / 2)``:

    * ``"conv1"``, ``"conv2"``: ``[B, H, W, 32]``
    * ``"conv3"``, ``"conv4"``: ``[B, H2, W2, 64]``
    * ``"fc1"``: ``[B, 256]``

    Both activations are non-decreasing, so a max-pool commutes with them: when a pooled
    layer is not tapped in the call (:func:`~jaxinterp.models.tapped`; ``apply_fn``), it is
    computed as ``act(maxpool(z))``, the activation on a quarter of the values, the same
    function with the same derivatives (equal in float64, tested; in float32 the rounding of
    the activation can pick the other input of a near-tie, as it can between float32 and
    float64 in either order). On a 2-core Zen 3 (in-process alternating A/B) the CNN's plain
    train step at batch 128 took 0.87× the time, PGD-10 0.94× and the study's small CNN's
    input gradients 0.90×. With the layer tapped (``features_fn``, ``layer_fn``) it is
    ``maxpool(act(z))``, so that the tap sees the activation before pooling.

    Works on 8x8x1 (digits, 2x2 after pooling), 28x28, 32x32x1 and 32x32x3 inputs. Note that
    the first dense layer's width depends on the input's spatial size, so parameters initialised
    for one input size only fit that size.

    Attributes:
        num_classes: Number of output logits (>= 2).
        activation: ``"relu"`` or ``"softplus"``.
        beta: Softplus sharpness β > 0.
        channels: Output channels of the four convolutions.
        hidden: Width of the hidden dense layer.
        conv: The convolution, ``lax.conv_general_dilated``'s signature; the default
            :func:`~jaxinterp.models.loop_safe_conv` keeps derivatives fast inside ``lax``
            loops on CPU (same values as ``lax.conv_general_dilated``).

    References:
        Joo et al., "Towards More Robust Interpretation via Local Gradient Alignment",
        AAAI 2023.
    """

    num_classes: int
    activation: str = "softplus"
    beta: float = 1.0
    channels: Sequence[int] = (32, 32, 64, 64)
    hidden: int = 256
    conv: Callable[..., jax.Array] = loop_safe_conv

    def __post_init__(self) -> None:
        check_model_config(self.num_classes, self.activation, self.beta)
        checks.sequence("channels", self.channels, checks.integer, length=4)
        checks.integer("hidden", self.hidden)
        checks.function("conv", self.conv)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Computes logits.

        Args:
            x: Images of shape ``[B, H, W, C]``, float32.

        Returns:
            Logits of shape ``[B, num_classes]``.
        """
        x = checks.array(x, "x", ndims=(4,), image=True)
        act = get_activation(self.activation, beta=self.beta)
        h = x
        for i, ch in enumerate(self.channels, start=1):
            z = nn.Conv(int(ch), (3, 3), padding="SAME", conv_general_dilated=self.conv)(h)
            pooled = i % 2 == 0
            if pooled and not tapped(self, f"conv{i}"):
                # Both activations are non-decreasing, so the max-pool commutes with them:
                # pooling first evaluates the activation on a quarter of the values.
                h = act(_max_pool(z))
                continue
            h = tap(self, f"conv{i}", act(z))
            if pooled:
                h = _max_pool(h)
        h = h.reshape((h.shape[0], -1))
        h = act(nn.Dense(int(self.hidden))(h))
        h = tap(self, "fc1", h)
        return nn.Dense(self.num_classes)(h)
