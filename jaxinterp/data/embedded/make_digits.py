"""One-off script that writes ``digits.npz`` from scikit-learn's bundled digits.

The handwritten digits of scikit-learn (``sklearn.datasets.load_digits``; originally the
UCI "Optical Recognition of Handwritten Digits" test set) are 1,797 grayscale 8x8 images
with integer intensities 0..16 and labels 0..9. They ship inside the scikit-learn wheel,
so no network access is needed.

This script is the only place in the project that needs scikit-learn; scikit-learn is *not*
a dependency of ``jaxinterp``. The library only reads the resulting ``digits.npz`` (package
data next to this file), which holds:

* ``images``: ``uint8`` array of shape ``[1797, 8, 8]`` with values in ``0..16``.
* ``labels``: ``uint8`` array of shape ``[1797]`` with values in ``0..9``.

Usage (from the repository root)::

    python jaxinterp/data/embedded/make_digits.py [--out PATH]
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "digits.npz"


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """Loads scikit-learn's digits and converts them to compact integer arrays.

    Returns:
        A tuple ``(images, labels)``: ``images`` is ``uint8 [1797, 8, 8]`` in ``0..16`` and
        ``labels`` is ``uint8 [1797]`` in ``0..9``, in scikit-learn's original order.

    Raises:
        ValueError: If the bundled data does not have the expected shape or value range.
    """
    from sklearn.datasets import load_digits  # Local import: optional, one-off dependency.

    bunch = load_digits()
    raw_images = np.asarray(bunch.images)
    raw_labels = np.asarray(bunch.target)
    if raw_images.shape != (1797, 8, 8) or raw_labels.shape != (1797,):
        raise ValueError(f"unexpected shapes {raw_images.shape} and {raw_labels.shape}")
    if raw_images.min() < 0 or raw_images.max() > 16 or np.any(raw_images % 1):
        raise ValueError("expected integer pixel values in 0..16")
    images = raw_images.astype(np.uint8)
    labels = raw_labels.astype(np.uint8)
    if set(np.unique(labels).tolist()) != set(range(10)):
        raise ValueError("expected labels 0..9")
    return images, labels


def write_npz(out: pathlib.Path) -> None:
    """Writes the digits to a compressed ``.npz`` file.

    Args:
        out: Destination path (parent directories are created if needed).
    """
    images, labels = load_sklearn_digits()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images, labels=labels)
    print(f"wrote {out} ({out.stat().st_size} bytes): images {images.shape}, labels {labels.shape}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output .npz path")
    args = parser.parse_args(argv)
    write_npz(args.out)


if __name__ == "__main__":
    main()
