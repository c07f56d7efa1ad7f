"""Multi-layer perceptron classifier.

The simplest model in the zoo: it flattens each example and applies a stack of dense layers.
Every operation is per-example (no normalisation, no batch statistics), so the Jacobian of one
example's logits with respect to another example's input is exactly zero, and with the default
``softplus`` activation the network is C^∞ in its input, which makes it a convenient test bed
for input-gradient and Hessian penalties.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxinterp.core import checks
from jaxinterp.models._tap import tap
from jaxinterp.models.activations import check_model_config, get_activation


class MLP(nn.Module):
    """Fully connected classifier on flattened inputs.

    Architecture: ``flatten -> [dense(h) -> act] for h in hidden -> dense(num_classes)``.

    Post-activation outputs of the hidden layers are tapped (:func:`~jaxinterp.models.tap`:
    recorded and open to an offset) under the names ``"dense1"``, ``"dense2"``, ...
    (one per entry of ``hidden``), each of shape ``[B, hidden[i]]``. The parameter subtrees are
    Flax's automatic names ``Dense_0``, ``Dense_1``, ... (the last one is the output layer);
    sow names cannot reuse submodule names in Linen.

    Attributes:
        num_classes: Number of output logits (>= 2).
        hidden: Widths of the hidden layers; ``()`` gives a linear (softmax-regression) model.
        activation: ``"relu"`` or ``"softplus"``.
        beta: Softplus sharpness β > 0 (ignored by ``"relu"`` but still validated).

    Example:
        >>> model = MLP(num_classes=10, hidden=(64,))
        >>> params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
        >>> logits = model.apply({"params": params}, jnp.zeros((4, 8, 8, 1)))  # [4, 10]
    """

    num_classes: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "softplus"
    beta: float = 1.0

    def __post_init__(self) -> None:
        check_model_config(self.num_classes, self.activation, self.beta)
        checks.sequence("hidden", self.hidden, checks.integer, min_length=0)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Computes logits.

        Args:
            x: Inputs of shape ``[B, ...]`` (typically ``[B, H, W, C]``), floating point:
                integer images (raw ``uint8``), channels-first batches and ``B = 0`` are
                refused with a hint.

        Returns:
            Logits of shape ``[B, num_classes]``.
        """
        x = checks.array(x, "x", min_ndim=2, image=True)
        act = get_activation(self.activation, beta=self.beta)
        h = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden, start=1):
            h = act(nn.Dense(int(width))(h))
            h = tap(self, f"dense{i}", h)
        return nn.Dense(self.num_classes)(h)
