"""TFDS builders for the small datasets embedded in the package.

Both builders read ``embedded/digits.npz`` (scikit-learn's 1,797 handwritten 8x8 digits, see
``embedded/make_digits.py``), download nothing and need no TensorFlow: they are meant to be
prepared with ``download_and_prepare(file_format="array_record")`` and read with
``builder.as_data_source()``.

* ``digits``: the 8x8 digits as ``float32 [8, 8, 1]`` images in ``[0, 1]`` (value / 16).
* ``digits_canvas``: each digit upscaled 2x (nearest neighbour, 16x16) and placed at a
  deterministic pseudo-random offset on a 32x32 canvas of uniform background noise, with the
  digit's bounding box and ink mask as extra features (a localisation ground truth for
  attribution methods).

Both datasets share one fixed split: a permutation of the 1,797 indices drawn from
``np.random.default_rng(SPLIT_SEED)``; its first 360 entries form ``test``, the remaining 1,437
form ``train``. Examples are stored (and read back) in that permutation's order, so
``train[i]`` is npz example ``split_indices()["train"][i]``. Generation is fully deterministic.

The base class ``_EmbeddedDigitsBuilder`` is shared with the embedded MNIST subset's builders
(``mnist5k``, ``mnist_canvas``; see :mod:`jaxinterp.data.mnist_builders`), which override its
npz loader, split and metadata.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

NUM_EXAMPLES = 1797
NUM_TEST = 360
NUM_CLASSES = 10
SPLIT_SEED = 0
CANVAS_SEED = 1234
CANVAS_SIZE = 32
DIGIT_SCALE = 2
DIGIT_SIZE = 8 * DIGIT_SCALE  # 16: side of the pasted digit and of its bounding box.
MAX_OFFSET = CANVAS_SIZE - DIGIT_SIZE  # 16: offsets are drawn from [0, 16] inclusive.
NOISE_MAX = 0.25
# Store arrays as raw bytes rather than tf.train.Example number lists: preparing is about 2x
# faster (TFDS converts number lists element by element); reading is equally fast.
_RAW = tfds.features.Encoding.BYTES

_HOMEPAGE = "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits"
_CITATION = """@misc{alpaydin1998optical,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {Optical Recognition of Handwritten Digits},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi = {10.24432/C50P49}
}"""


def read_embedded_npz(filename: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``embedded/<filename>``: read-only ``uint8`` ``(images, labels)`` arrays."""
    resource = importlib.resources.files(__package__).joinpath("embedded", filename)
    with resource.open("rb") as f, np.load(f) as npz:
        images = np.asarray(npz["images"], dtype=np.uint8)
        labels = np.asarray(npz["labels"], dtype=np.uint8)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.cache
def load_digits_npz() -> tuple[np.ndarray, np.ndarray]:
    """Loads the embedded digits.

    Returns:
        ``(images, labels)``: read-only ``uint8 [1797, 8, 8]`` images with values in ``0..16``
        and read-only ``uint8 [1797]`` labels, in scikit-learn's order.
    """
    return read_embedded_npz("digits.npz")


@functools.cache
def split_indices() -> dict[str, np.ndarray]:
    """Returns the fixed npz indices of each split, in storage order.

    Returns:
        ``{"train": int64 [1437], "test": int64 [360]}`` (read-only), disjoint and covering
        ``range(1797)``.
    """
    perm = np.random.default_rng(SPLIT_SEED).permutation(NUM_EXAMPLES)
    out = {"test": perm[:NUM_TEST], "train": perm[NUM_TEST:]}
    for arr in out.values():
        arr.flags.writeable = False
    return out


def upscale(image: np.ndarray, factor: int = DIGIT_SCALE) -> np.ndarray:
    """Upscales a 2-D image by an integer factor with nearest-neighbour interpolation.

    Args:
        image: ``[H, W]`` array.
        factor: Integer scale factor.

    Returns:
        ``[H * factor, W * factor]`` array of the same dtype.
    """
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def make_canvas(digit: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders one ``digits_canvas`` example.

    The background is i.i.d. uniform noise in ``[0, NOISE_MAX]``. The digit (scaled to
    ``[0, 1]`` and upscaled 2x) is pasted at an offset drawn uniformly from ``[0, 16]^2``; its
    ink pixels (value > 0) *overwrite* the noise, while its zero pixels keep the noise, so the
    box is not a noise-free square and the canvas equals the digit exactly on the mask. The
    random generator is seeded with ``(CANVAS_SEED, index)``, making each example reproducible
    independently of the others.

    Args:
        digit: ``[8, 8]`` digit with integer values in ``0..16``.
        index: Index of the digit in the npz (seeds the example's random generator).

    Returns:
        ``(canvas, bbox, mask)``: ``float32 [32, 32, 1]`` canvas in ``[0, 1]``; ``float32 [4]``
        box ``[ymin, xmin, ymax, xmax]`` in pixels (max exclusive); ``bool [32, 32]`` ink mask.
    """
    rng = np.random.default_rng([CANVAS_SEED, int(index)])
    y, x = (int(v) for v in rng.integers(0, MAX_OFFSET + 1, size=2))
    canvas = rng.uniform(0.0, NOISE_MAX, size=(CANVAS_SIZE, CANVAS_SIZE)).astype(np.float32)
    big = upscale(np.asarray(digit, dtype=np.float32) / 16.0)
    mask = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=bool)
    mask[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE] = big > 0
    window = canvas[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE]
    canvas[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE] = np.where(big > 0, big, window)
    bbox = np.array([y, x, y + DIGIT_SIZE, x + DIGIT_SIZE], dtype=np.float32)
    return canvas[..., None], bbox, mask


# tfds is untyped: mypy checks the class keyword against object.__init_subclass__.
class _EmbeddedDigitsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
    """Shared logic of the embedded-digits builders (a base class, not registered with TFDS).

    A subclass names its features (:meth:`_features`) and how one npz example becomes their
    values (:meth:`_encode`). The class attributes below default to scikit-learn's digits;
    another embedded dataset (``mnist_builders``) overrides them: ``_load_npz`` returns
    ``(images, labels)``, ``_split_indices`` the npz indices of each split in storage order.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    _DESCRIPTION = ""
    _HOMEPAGE_URL = _HOMEPAGE
    _CITATION_TEXT = _CITATION
    _LICENSE = "CC BY 4.0"
    _load_npz = staticmethod(load_digits_npz)
    _split_indices = staticmethod(split_indices)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """Path of this module.

        Overrides TFDS's lookup, which in TFDS 4.9.10 on Python >= 3.9 imports the
        ``importlib_resources`` backport that TFDS does not install (``ModuleNotFoundError``
        at ``download_and_prepare``). TFDS uses it only to look for a ``checksums.tsv`` next
        to the builder; there is none, as nothing is downloaded.
        """
        return epath.Path(__file__)

    def _features(self) -> dict[str, tfds.features.FeatureConnector]:
        """Returns the features of one example (without the label)."""
        raise NotImplementedError

    def _encode(self, digit: np.ndarray, index: int) -> dict[str, Any]:
        """Returns the feature values (without the label) of npz example ``index``."""
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict(
            {**self._features(), "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES)}
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=self._DESCRIPTION,
            features=features,
            supervised_keys=("image", "label"),
            # Keep storage order = split-permutation order (keys are positions in the split).
            disable_shuffling=True,
            homepage=self._HOMEPAGE_URL,
            citation=self._CITATION_TEXT,
            license=self._LICENSE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        del dl_manager  # Nothing to download: the data ships with the package.
        return {name: self._generate_examples(name) for name in ("train", "test")}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        images, labels = self._load_npz()
        for position, index in enumerate(self._split_indices()[split]):
            example = self._encode(images[index], int(index))
            example["label"] = int(labels[index])
            yield position, example


class Digits(_EmbeddedDigitsBuilder):
    """scikit-learn's 8x8 handwritten digits as ``float32 [8, 8, 1]`` images in ``[0, 1]``."""

    name = "digits"
    _DESCRIPTION = (
        "1,797 8x8 grayscale handwritten digits (scikit-learn's load_digits, from the UCI "
        "optical recognition dataset), scaled to [0, 1]. Fixed split: 1,437 train / 360 test."
    )

    def _features(self) -> dict[str, tfds.features.FeatureConnector]:
        return {"image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32, encoding=_RAW)}

    def _encode(self, digit: np.ndarray, index: int) -> dict[str, Any]:
        del index
        return {"image": (digit.astype(np.float32) / 16.0)[..., None]}


class DigitsCanvas(_EmbeddedDigitsBuilder):
    """Digits upscaled to 16x16 and placed at a random offset on a noisy 32x32 canvas."""

    name = "digits_canvas"
    _DESCRIPTION = (
        "The 1,797 scikit-learn digits upscaled 2x (nearest) and placed at a deterministic "
        "random offset on a 32x32 canvas of uniform [0, 0.25] noise; ink pixels overwrite the "
        "noise. Extra features: bbox [ymin, xmin, ymax, xmax] (pixels, max exclusive) of the "
        "16x16 digit box and the boolean ink mask. Same split as `digits`."
    )

    def _features(self) -> dict[str, tfds.features.FeatureConnector]:
        shape = (CANVAS_SIZE, CANVAS_SIZE)
        return {
            "image": tfds.features.Tensor(shape=(*shape, 1), dtype=np.float32, encoding=_RAW),
            "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "mask": tfds.features.Tensor(shape=shape, dtype=np.bool_, encoding=_RAW),
        }

    def _encode(self, digit: np.ndarray, index: int) -> dict[str, Any]:
        canvas, bbox, mask = make_canvas(digit, index)
        return {"image": canvas, "bbox": bbox, "mask": mask}
