"""Tests of jaxinterp.data: embedded TFDS builders and the in-memory split loader.

All tests run offline and use temporary data directories, never the home directory.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxinterp import data
from jaxinterp.data import builders, loader

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = ("digits", "digits_canvas")  # The embedded MNIST subset: tests/test_mnist_data.py.


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data directory shared by the tests of this module (prepared on first use)."""
    return str(tmp_path_factory.mktemp("tfds"))


def _sorted_rows(images: np.ndarray) -> np.ndarray:
    """Sorts flattened images lexicographically (a canonical form of a multiset)."""
    flat = images.reshape(len(images), -1)
    return flat[np.lexsort(flat.T[::-1])]


@pytest.mark.parametrize("name", DIGITS)
def test_split_sizes_dtypes_and_ranges(name: str, data_dir: str) -> None:
    size = 8 if name == "digits" else 32
    for split, n in (("train", 1437), ("test", 360)):
        s = data.load_split(name, split, data_dir=data_dir)
        assert (s.name, s.split, len(s), s.num_classes) == (name, split, n, 10)
        assert s.input_shape == (size, size, 1)
        assert s.images.dtype == np.float32 and s.labels.dtype == np.int32
        assert s.images.min() >= 0.0 and s.images.max() <= 1.0
        assert set(np.unique(s.labels)) == set(range(10))
        assert not s.images.flags.writeable and not s.labels.flags.writeable


def test_digits_match_npz(data_dir: str) -> None:
    npz_images, npz_labels = builders.load_digits_npz()
    assert npz_images.shape == (1797, 8, 8) and npz_images.dtype == np.uint8
    idx = builders.split_indices()
    assert len(np.intersect1d(idx["train"], idx["test"])) == 0
    assert np.array_equal(np.sort(np.concatenate([idx["train"], idx["test"]])), np.arange(1797))
    train = data.load_split("digits", "train", data_dir=data_dir)
    test = data.load_split("digits", "test", data_dir=data_dir)
    # Multiset check, independent of the split bookkeeping.
    both = np.concatenate([train.images, test.images])[..., 0]
    assert np.array_equal(_sorted_rows(both * 16), _sorted_rows(npz_images.astype(np.float32)))
    # Storage order is the split permutation's order.
    for s in (train, test):
        assert np.array_equal(s.images[..., 0], npz_images[idx[s.split]] / np.float32(16))
        assert np.array_equal(s.labels, npz_labels[idx[s.split]])


def test_canvas_geometry(data_dir: str) -> None:
    npz_images, npz_labels = builders.load_digits_npz()
    for split, indices in builders.split_indices().items():
        s = data.load_split("digits_canvas", split, data_dir=data_dir)
        bbox, mask = s.extras["bbox"], s.extras["mask"]
        assert bbox.shape == (len(s), 4) and bbox.dtype == np.float32
        assert mask.shape == (len(s), 32, 32) and mask.dtype == np.bool_
        assert np.array_equal(s.labels, npz_labels[indices])
        box = bbox.astype(int)
        assert np.array_equal(box, bbox)
        assert np.all(box[:, 2] - box[:, 0] == 16) and np.all(box[:, 3] - box[:, 1] == 16)
        assert np.all(box[:, :2] >= 0) and np.all(box[:, 2:] <= 32)
        for i, (y0, x0, y1, x1) in enumerate(box):
            digit = builders.upscale(npz_images[indices[i]].astype(np.float32) / 16)
            inside = np.zeros((32, 32), dtype=bool)
            inside[y0:y1, x0:x1] = True
            assert not np.any(mask[i] & ~inside)
            assert np.array_equal(mask[i, y0:y1, x0:x1], digit > 0)
            crop = s.images[i, y0:y1, x0:x1, 0]
            np.testing.assert_array_equal(crop[digit > 0], digit[digit > 0])
            background = s.images[i, ..., 0][~mask[i]]
            assert background.max() <= builders.NOISE_MAX
        # Offsets cover the whole [0, 16] range in both axes.
        assert box[:, 0].min() == 0 and box[:, 0].max() == 16
        assert box[:, 1].min() == 0 and box[:, 1].max() == 16


def test_deterministic_across_preparations(tmp_path: pathlib.Path, data_dir: str) -> None:
    for name in DIGITS:
        for split in ("train", "test"):
            a = data.load_split(name, split, data_dir=data_dir)
            b = data.load_split(name, split, data_dir=str(tmp_path))
            assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
            assert a.extras.keys() == b.extras.keys()
            for key in a.extras:
                assert np.array_equal(a.extras[key], b.extras[key])


def test_cache_and_reuse(data_dir: str) -> None:
    a = data.load_split("digits", "test", data_dir=data_dir)
    b = data.load_split("digits", "test", data_dir=data_dir)
    assert a.images is b.images  # Cached in-process.
    assert a.extras is not b.extras  # Callers get their own dict.
    loader.clear_cache()
    c = data.load_split("digits", "test", data_dir=data_dir)  # Re-read, not re-prepared.
    assert c.images is not a.images and np.array_equal(c.images, a.images)
    assert data.get_builder("digits", data_dir=data_dir).is_prepared()


def test_unknown_dataset_and_split(data_dir: str) -> None:
    with pytest.raises(ValueError, match=r"Unknown dataset name='nope'; known datasets: digits"):
        data.load_split("nope", data_dir=data_dir)
    with pytest.raises(ValueError, match=r"name='nope'"):
        data.get_builder("nope", data_dir=data_dir)
    with pytest.raises(ValueError, match=r"Unknown split='val'.*available splits: test, train"):
        data.load_split("digits", "val", data_dir=data_dir)


def test_registry_dataset_not_prepared(tmp_path: pathlib.Path) -> None:
    empty = str(tmp_path / "empty")
    command = f"jaxinterp prepare --dataset mnist --data-dir {empty}"
    with pytest.raises(FileNotFoundError) as info:
        data.load_split("mnist", "train", data_dir=empty)
    message = str(info.value)
    assert "\n" not in message
    assert f"not prepared in {empty}" in message and message.endswith(command)
    assert not os.path.exists(empty)  # Loading never downloads or creates anything.


def test_prepared_in_wrong_format(tmp_path: pathlib.Path) -> None:
    data_dir = str(tmp_path)
    data.prepare("digits", data_dir=data_dir)
    info_path = tmp_path / "digits" / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    with pytest.raises(FileNotFoundError, match=r"in tfrecord format, not array_record"):
        data.load_split("digits", "train", data_dir=data_dir)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAXINTERP_DATA_DIR", "/a")
    monkeypatch.setenv("TFDS_DATA_DIR", "/b")
    assert data.default_data_dir() == "/a"
    monkeypatch.delenv("JAXINTERP_DATA_DIR")
    assert data.default_data_dir() == "/b"
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert data.default_data_dir().endswith(
        os.path.join(".cache", "jaxinterp", "tensorflow_datasets")
    )


def test_concurrent_preparation(tmp_path: pathlib.Path) -> None:
    script = (
        "import sys; from jaxinterp import data; "
        "print(len(data.load_split('digits', 'train', data_dir=sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip().splitlines()[-1] == "1437"
    assert sorted(os.listdir(tmp_path / "digits")) == ["1.0.0"]
