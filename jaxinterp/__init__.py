"""jaxinterp: faithful and robust explanations in JAX.

Subpackages: ``data`` (embedded TFDS datasets, batching), ``models`` (Flax models behind a
plain ``apply_fn(params, x)``), ``regularizers`` (training-time penalties), ``attacks``
(label and attribution attacks, boundary search), ``attribution`` (gradients, IG,
smoothing, RelEx, boundary attributions), ``training`` (pure train step, data parallelism,
checkpoints).
"""

__version__ = "0.1.0"
