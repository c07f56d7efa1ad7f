"""Host-side batching: a deterministic batch for every step, sliced per process.

The batch of a training step is a pure function of ``(seed, step)``: the epoch's
permutation comes from ``numpy.random.default_rng((seed, epoch))`` and the step picks its
slice. A run restarted from a checkpoint at step ``s`` therefore sees exactly the batches an
uninterrupted run sees, and every process computes the same global batch and keeps only its
own contiguous part (``jax.process_index()``), which is what
``jax.make_array_from_process_local_data`` expects for a batch sharded on one mesh axis.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["epoch_permutation", "eval_batches", "local_slice", "train_batch_indices"]


def epoch_permutation(num_examples: int, *, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the examples.

    Returns:
      int64 array ``[num_examples]``, a permutation of ``range(num_examples)``.
    """
    return np.random.default_rng((seed, epoch)).permutation(num_examples)


def train_batch_indices(step: int, *, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
    """Global example indices of the batch used at ``step``.

    Each epoch is a fresh permutation; its last incomplete batch is dropped, so every batch
    has exactly ``batch_size`` distinct examples.

    Returns:
      int64 array ``[batch_size]``.
    """
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size={batch_size} is larger than the training set ({num_examples} examples)"
        )
    steps_per_epoch = num_examples // batch_size
    epoch, within = divmod(step, steps_per_epoch)
    perm = epoch_permutation(num_examples, seed=seed, epoch=epoch)
    return perm[within * batch_size : (within + 1) * batch_size]


def local_slice(
    global_indices: np.ndarray, *, process_index: int, process_count: int
) -> np.ndarray:
    """This process's contiguous share of a global batch (``len % process_count == 0``)."""
    n = len(global_indices)
    if n % process_count:
        raise ValueError(f"a global batch of {n} cannot be split over {process_count} processes")
    per = n // process_count
    return global_indices[process_index * per : (process_index + 1) * per]


def eval_batches(num_examples: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fixed-size batches covering every example once, padded at the end.

    Yields:
      ``(indices [batch_size], mask [batch_size] bool)``; padded slots repeat index 0 and
      have ``mask == False`` so that they count for nothing.
    """
    for start in range(0, num_examples, batch_size):
        idx = np.arange(start, min(start + batch_size, num_examples))
        mask = np.ones(batch_size, dtype=bool)
        mask[len(idx) :] = False
        idx = np.concatenate([idx, np.zeros(batch_size - len(idx), dtype=idx.dtype)])
        yield idx, mask
