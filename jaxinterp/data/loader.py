"""Loading whole dataset splits into host memory through TFDS array_record data sources.

Two kinds of datasets are supported, read the same way (``builder.as_data_source()``, no
TensorFlow needed):

* ``EMBEDDED`` datasets (``digits``, ``digits_canvas``, ``mnist5k``, ``mnist_canvas``) ship
  with the package and are prepared automatically, offline, into the data directory on first
  use.
* ``REGISTRY`` datasets are TFDS catalogue datasets. They must be prepared beforehand in
  array_record format with ``jaxinterp prepare --dataset NAME --data-dir DIR`` (which calls
  :func:`prepare`) on a machine with network access; loading never downloads.

The data directory is the ``data_dir`` argument, else :func:`default_data_dir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.resources.abc
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from jaxinterp.data.builders import Digits, DigitsCanvas
from jaxinterp.data.mnist_builders import Mnist5k, MnistCanvas

EMBEDDED = ("digits", "digits_canvas", "mnist5k", "mnist_canvas")
REGISTRY = ("mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn_cropped", "imagenette")
_EMBEDDED_BUILDERS = {
    "digits": Digits,
    "digits_canvas": DigitsCanvas,
    "mnist5k": Mnist5k,
    "mnist_canvas": MnistCanvas,
}
_FORMAT = tfds.core.file_adapters.FileFormat.ARRAY_RECORD
_CHUNK = 4096  # Examples fetched per data-source call when reading a split.


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """A dataset split held in host memory.

    Attributes:
        name: Dataset name.
        split: Split name.
        images: ``[N, H, W, C]`` float32 images in ``[0, 1]``.
        labels: ``[N]`` int32 labels.
        num_classes: Number of classes.
        extras: Every other feature, stacked along the first axis and keyed by its name:
            ``bbox [N, 4]`` and ``mask [N, H, W]`` for ``digits_canvas``; ``bbox``,
            ``distractor_bbox [N, 4]`` and ``mask`` for ``mnist_canvas``.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape ``(H, W, C)`` of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def default_data_dir() -> str:
    """Returns ``$JAXINTERP_DATA_DIR``, else ``$TFDS_DATA_DIR``, else a cache directory.

    Returns:
        The data directory; the fallback is ``~/.cache/jaxinterp/tensorflow_datasets``.
    """
    for var in ("JAXINTERP_DATA_DIR", "TFDS_DATA_DIR"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    return os.path.expanduser(os.path.join("~", ".cache", "jaxinterp", "tensorflow_datasets"))


def _check_name(name: str) -> None:
    if name not in EMBEDDED and name not in REGISTRY:
        known = ", ".join(EMBEDDED + REGISTRY)
        raise ValueError(f"Unknown dataset name={name!r}; known datasets: {known}.")


def get_builder(name: str, *, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """Returns the TFDS builder of a dataset, without preparing or downloading anything.

    Args:
        name: A name in ``EMBEDDED`` or ``REGISTRY``.
        data_dir: Data directory (default: :func:`default_data_dir`).

    Returns:
        The builder. If the dataset is already prepared, its file format is the stored one;
        otherwise it is array_record.

    Raises:
        ValueError: If ``name`` is unknown.
    """
    _check_name(name)
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    make = _EMBEDDED_BUILDERS.get(name) or functools.partial(tfds.builder, name)
    try:
        return make(data_dir=data_dir, file_format=_FORMAT)
    except ValueError as e:  # Already prepared in another format, stored in dataset_info.json.
        if "File format is already set" not in str(e):
            raise
        return make(data_dir=data_dir)


@contextlib.contextmanager
def _prepare_lock(data_dir: str, name: str) -> Iterator[None]:
    """Serialises preparation of one dataset across processes (POSIX ``flock``; else no-op)."""
    try:
        import fcntl
    except ImportError:  # Windows: rely on TFDS's atomic rename plus the re-check in prepare().
        yield
        return
    lock_dir = os.path.join(data_dir, ".jaxinterp_locks")
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, f"{name}.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _importlib_resources_shim() -> Iterator[None]:
    """Lets TFDS 4.9.10 prepare catalogue datasets without the ``importlib_resources`` backport.

    ``DatasetBuilder.code_path`` (used to find a builder's checksums) imports the backport,
    which TFDS only declares as a dependency for Python < 3.9. On 3.11 the standard library's
    ``importlib.resources`` is equivalent; it is aliased only while preparing, if missing.
    """
    if "importlib_resources" in sys.modules or importlib.util.find_spec("importlib_resources"):
        yield
        return
    sys.modules["importlib_resources"] = importlib.resources
    try:
        yield
    finally:
        sys.modules.pop("importlib_resources", None)


def prepare(name: str, *, data_dir: str | None = None) -> None:
    """Prepares a dataset in array_record format (a no-op if it is already prepared).

    Embedded datasets are generated offline. Registry datasets are downloaded, so this needs
    network access, and TFDS needs TensorFlow to encode images while generating them.

    Args:
        name: A name in ``EMBEDDED`` or ``REGISTRY``.
        data_dir: Data directory (default: :func:`default_data_dir`).

    Raises:
        ValueError: If ``name`` is unknown.
        ImportError: If generating the dataset needs TensorFlow and it is not installed.
    """
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    if get_builder(name, data_dir=data_dir).is_prepared():
        return
    os.makedirs(data_dir, exist_ok=True)
    with _prepare_lock(data_dir, name), _importlib_resources_shim():
        builder = get_builder(name, data_dir=data_dir)  # Re-check: another process may have won.
        if builder.is_prepared():
            return
        # Embedded datasets download nothing: keep TFDS's empty downloads/ out of data_dir.
        downloads = tempfile.TemporaryDirectory() if name in EMBEDDED else None
        # The embedded datasets take a second to generate: no TFDS progress bars for them.
        bars = tqdm_utils._active
        tqdm_utils.display_progress_bar(bars and name not in EMBEDDED)
        try:
            builder.download_and_prepare(
                file_format=_FORMAT, download_dir=downloads.name if downloads else None
            )
        except ModuleNotFoundError as e:
            if e.name != "tensorflow":
                raise
            raise ImportError(
                f"Preparing {name!r} needs TensorFlow (pip install tensorflow); reading it "
                "afterwards does not. Downloaded files are kept and reused on the next try."
            ) from e
        except OSError:  # Lost a race without a lock: fine if the other process finished.
            if not get_builder(name, data_dir=data_dir).is_prepared():
                raise
        finally:
            tqdm_utils.display_progress_bar(bars)
            if downloads:
                downloads.cleanup()


def _prepared_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the builder of a prepared array_record dataset, preparing embedded ones."""
    if name in EMBEDDED:
        prepare(name, data_dir=data_dir)
    builder = get_builder(name, data_dir=data_dir)
    command = f"jaxinterp prepare --dataset {name} --data-dir {data_dir}"
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"Dataset {name!r} is not prepared in {data_dir}; on a machine with network "
            f"access, run: {command}"
        )
    formats = builder.info.available_file_formats()
    if _FORMAT not in formats:
        found = ", ".join(sorted(f.value for f in formats)) or "unknown"
        raise FileNotFoundError(
            f"Dataset {name!r} is prepared in {data_dir} in {found} format, not array_record; "
            f"delete {builder.data_dir} and run: {command}"
        )
    return builder


def _to_images(array: np.ndarray) -> np.ndarray:
    """Converts stacked images to float32 ``[N, H, W, C]`` in ``[0, 1]``."""
    if array.ndim == 3:  # Grayscale [N, H, W].
        array = array[..., None]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    return array.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, data_dir: str) -> Split:
    """Reads a whole split into read-only arrays (cached; callers get a shallow copy)."""
    builder = _prepared_builder(name, data_dir)
    splits = sorted(builder.info.splits.keys())
    if split not in splits:
        raise ValueError(
            f"Unknown split={split!r} for dataset {name!r}; available splits: {', '.join(splits)}."
        )
    image_key, label_key = builder.info.supervised_keys or ("image", "label")
    for key, feature in builder.info.features.items():
        if None in tuple(getattr(feature, "shape", ()) or ()):
            raise ValueError(
                f"Dataset {name!r} has variable-shape feature {key!r} "
                f"{feature.shape}; it cannot be loaded as one array."
            )
    source = builder.as_data_source(split=split)
    columns: dict[str, np.ndarray] = {}
    for start in range(0, len(source), _CHUNK):
        chunk = source.__getitems__(list(range(start, min(start + _CHUNK, len(source)))))
        for key in chunk[0]:
            values = np.stack([np.asarray(example[key]) for example in chunk])
            if key not in columns:
                columns[key] = np.empty((len(source),) + values.shape[1:], values.dtype)
            columns[key][start : start + len(chunk)] = values
    images = _to_images(columns.pop(image_key))
    labels = columns.pop(label_key).astype(np.int32)
    for array in (images, labels, *columns.values()):
        array.flags.writeable = False
    num_classes = int(builder.info.features[label_key].num_classes)
    return Split(name, split, images, labels, num_classes, dict(sorted(columns.items())))


def load_split(name: str, split: str = "train", *, data_dir: str | None = None) -> Split:
    """Loads a whole dataset split into host memory.

    Embedded datasets are prepared into ``data_dir`` on first use. The arrays are cached
    in-process per ``(name, split, data_dir)`` and read-only; see :func:`clear_cache`.

    Args:
        name: A name in ``EMBEDDED`` or ``REGISTRY``.
        split: Split name, e.g. ``"train"`` or ``"test"``.
        data_dir: Data directory (default: :func:`default_data_dir`).

    Returns:
        The split, in storage order.

    Raises:
        ValueError: If ``name`` or ``split`` is unknown, or a feature has a variable shape.
        FileNotFoundError: If a registry dataset is not prepared in ``data_dir`` in
            array_record format. The one-line message gives the command that prepares it.
    """
    _check_name(name)
    data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    cached = _load_cached(name, split, data_dir)
    return dataclasses.replace(cached, extras=dict(cached.extras))


def clear_cache() -> None:
    """Forgets the splits cached by :func:`load_split` (e.g. after re-preparing a dataset)."""
    _load_cached.cache_clear()
