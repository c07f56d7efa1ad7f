"""Explanation-quality metrics (METHODS §4): per example, jittable, with a batch accumulator.

Every metric returns one float32 value per example, shape ``[B]`` (the dict-valued ones a
dict of such arrays), never a batch mean: merge batches with :class:`Accumulator`. Images
are channels-last ``[B, H, W, C]``; a *map* is ``[B, H, W]``; a *pixel* is one position
with all its channels. Hyperparameters that fix shapes (``num_steps``, ``num_samples``,
``num_draws``, ``window_size``, ``k``) are Python ints, bound with ``functools.partial``
before ``jax.jit``; randomness is a keyword-only ``key``. Inputs are checked at the Python
boundary (shapes always, values only outside ``jit``): inputs ``x`` must be floats (raw
``uint8`` images are refused: ``x.astype(jnp.float32) / 255``), channels last and a batch of
``B >= 1``. An example whose attribution (or map) holds a NaN or an infinity gets NaN from
every metric of it, the other examples of the batch unchanged.

* Faithfulness: :func:`deletion_auc`, :func:`insertion_auc` (and their
  :func:`perturbation_curve`), :func:`infidelity`, :func:`completeness_delta`.
* Robustness to random noise: :func:`max_sensitivity`,
  :func:`random_perturbation_similarity` of :func:`heatmap` under :data:`SIMILARITIES`
  (:func:`pearson`, :func:`ssim`, :func:`cosine_similarity`, :func:`mse`).
* Robustness to attribution attacks: :func:`attack_robustness`, from
  :func:`topk_intersection`, :func:`spearman`, :func:`kendall_tau`,
  :func:`center_of_mass_shift`.
* Robust accuracy under label attacks: :func:`robust_accuracy` (the per-example worst case).
* Localisation: :func:`energy_game`, :func:`distractor_game`, :func:`pointing_game`,
  :func:`box_mask`.
* Sparseness and structure: :func:`gini`, :func:`spatial_coherence`.
* Retrieval rate: :func:`retrieval`, :func:`retrieval_specificity`. APE: :func:`ape`.

Example::

    import jax
    from jaxinterp import attribution, metrics

    @jax.jit
    def batch_metrics(x, y, key):
        prob = attribution.class_score(apply_fn, params, y, kind="softmax")
        explain = lambda z: attribution.gradient(attribution.class_score(apply_fn, params, y), z)
        phi = explain(x)
        return {
            "deletion": metrics.deletion_auc(prob, x, phi, num_steps=16),
            "gini": metrics.gini(phi),
            "rps": metrics.random_perturbation_similarity(explain, x, key=key),
        }

    accs = {}
    for i, (x, y) in enumerate(batches):
        accs = metrics.accumulate(accs, batch_metrics(x, y, jax.random.fold_in(key, i)))
    summary = {name: acc.compute() for name, acc in accs.items()}  # mean, std, count
"""

from ._accumulator import Accumulator, accumulate
from ._ape import ape
from ._attack_robustness import (
    attack_robustness,
    center_of_mass,
    center_of_mass_shift,
)
from ._faithfulness import (
    SUBSTRATES,
    completeness_delta,
    deletion_auc,
    infidelity,
    insertion_auc,
    perturbation_curve,
)
from ._localisation import box_mask, distractor_game, energy_game, pointing_game
from ._rank import average_ranks, kendall_tau, spearman, topk_intersection
from ._retrieval import retrieval, retrieval_specificity
from ._robust_accuracy import robust_accuracy
from ._robustness import heatmap, max_sensitivity, random_perturbation_similarity
from ._similarity import SIMILARITIES, cosine_similarity, mse, pearson, ssim
from ._sparseness import gini, spatial_coherence

# One name per line, sorted; a new module's names go in an import above and here.
__all__ = [
    "SIMILARITIES",
    "SUBSTRATES",
    "Accumulator",
    "accumulate",
    "ape",
    "attack_robustness",
    "average_ranks",
    "box_mask",
    "center_of_mass",
    "center_of_mass_shift",
    "completeness_delta",
    "cosine_similarity",
    "deletion_auc",
    "distractor_game",
    "energy_game",
    "gini",
    "heatmap",
    "infidelity",
    "insertion_auc",
    "kendall_tau",
    "max_sensitivity",
    "mse",
    "pearson",
    "perturbation_curve",
    "pointing_game",
    "random_perturbation_similarity",
    "retrieval",
    "retrieval_specificity",
    "robust_accuracy",
    "spatial_coherence",
    "spearman",
    "ssim",
    "topk_intersection",
]
