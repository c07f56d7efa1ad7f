"""Datasets for jaxinterp: TFDS array_record data sources loaded into host memory.

The embedded datasets (``digits``, ``digits_canvas``, and the 5,000-image MNIST subset
``mnist5k`` with its distractor canvas ``mnist_canvas``) ship with the package and are
prepared offline on first use; TFDS catalogue datasets (``REGISTRY``) are prepared
beforehand with ``jaxinterp prepare --dataset NAME --data-dir DIR``. Nothing here needs
TensorFlow.

Example::

    from jaxinterp import data

    train = data.load_split("digits", "train")  # train.images: float32 [1437, 8, 8, 1]
"""

from jaxinterp.data.builders import Digits, DigitsCanvas
from jaxinterp.data.loader import (
    EMBEDDED,
    REGISTRY,
    Split,
    default_data_dir,
    get_builder,
    load_split,
    prepare,
)
from jaxinterp.data.mnist_builders import Mnist5k, MnistCanvas

__all__ = [
    # Loading (loader.py).
    "EMBEDDED",
    "REGISTRY",
    "Split",
    "default_data_dir",
    "get_builder",
    "load_split",
    "prepare",
    # TFDS builders (builders.py).
    "Digits",
    "DigitsCanvas",
    # TFDS builders (mnist_builders.py).
    "Mnist5k",
    "MnistCanvas",
]
