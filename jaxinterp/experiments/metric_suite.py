"""The metrics ``jaxinterp evaluate`` computes, by name, over one batch of explanations.

Each entry of the registry :data:`METRICS` is ``fn(case: Case) -> {value name: [B]}`` (the
entry's factory is that function; ``METRICS[name](case)`` runs it): a metric may give
several per-example values (e.g. an attribution attack gives the top-k intersection, the rank
correlations and the centre-of-mass shift between the clean and the attacked map). All are
built from :mod:`jaxinterp.metrics`; this module only fixes their settings and inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp

from jaxinterp import attacks, attribution, metrics
from jaxinterp.core.registry import Registry

_DIFF = ("differentiable",)

__all__ = ["METRICS", "NO_ATTRIBUTION", "Case", "Settings", "needs"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Hyperparameters of the evaluation (inputs in ``[0, 1]``).

    Attributes:
      epsilon: L∞ radius of the label attack (retrieval) and of APE's masked attack.
      attack_steps: Steps of the label and attribution attacks.
      attribution_epsilon: L∞ radius of the attribution attacks (top-k, targeted).
      topk_fraction: ``k`` of the top-k attack and intersection, as a fraction of the map.
      rps_epsilon: Noise radius of the random perturbation similarity (Joo et al.: 4/255).
      sensitivity_radius: Radius of max-sensitivity's uniform noise.
      num_samples: Noise samples of max-sensitivity and infidelity.
      deletion_steps: Steps of the deletion and insertion curves.
      ape_fraction: Fraction of pixels APE perturbs.
      manipulation_steps: Adam steps of the targeted manipulation (the RobustAGA reference's
        100, learning rate ``4 · attribution_epsilon / manipulation_steps``).
    """

    epsilon: float = 0.1
    attack_steps: int = 20
    attribution_epsilon: float = 0.05
    topk_fraction: float = 0.1
    rps_epsilon: float = 4 / 255
    sensitivity_radius: float = 0.02
    num_samples: int = 8
    deletion_steps: int = 16
    ape_fraction: float = 0.1
    manipulation_steps: int = 100


@dataclasses.dataclass(frozen=True)
class Case:
    """One batch to evaluate: a model, inputs, the class explained and its attribution.

    Attributes:
      apply_fn: ``apply_fn(params, x) -> logits``.
      params: The model's params.
      x: ``[B, H, W, C]`` inputs.
      target: ``[B]`` the class explained (the model's prediction on ``x``).
      attr: ``[B, H, W, C]`` the attribution of ``target`` at ``x``.
      explain_fn: ``explain_fn(apply_fn, params, x, target) -> attribution`` (the method, its
        key fixed), differentiable in ``x`` for the explainers tagged ``differentiable`` in
        :data:`jaxinterp.attribution.EXPLAINERS`.
      key: A PRNG key for the metric's own randomness.
      settings: The hyperparameters.
      extras: Other features of the batch, e.g. ``bbox [B, 4]`` and ``mask [B, H, W]``.
      surrogate_apply_fn: A smooth twin of a ReLU ``apply_fn`` for the attribution attacks.
    """

    apply_fn: Callable
    params: Any
    x: jax.Array
    target: jax.Array
    attr: jax.Array
    explain_fn: Callable
    key: jax.Array
    settings: Settings
    extras: dict = dataclasses.field(default_factory=dict)
    surrogate_apply_fn: Callable | None = None

    def score(self, kind: str = "softmax") -> Callable:
        return attribution.class_score(self.apply_fn, self.params, self.target, kind)

    def explain_at(self, x: jax.Array) -> jax.Array:
        return self.explain_fn(self.apply_fn, self.params, x, self.target)


def _k(c: Case) -> int:
    return max(1, int(round(c.settings.topk_fraction * c.x.shape[1] * c.x.shape[2])))


def _attacked(c: Case, attack: Callable, **kwargs: Any) -> dict[str, jax.Array]:
    return metrics.attack_robustness(
        attack,
        c.explain_fn,
        c.apply_fn,
        c.params,
        c.x,
        c.target,
        k=_k(c),
        surrogate_apply_fn=c.surrogate_apply_fn,
        clean_attribution=c.attr,
        **kwargs,
    )


def _topk_attack(c: Case) -> dict[str, jax.Array]:
    s = c.settings
    attack = attacks.topk_attack(
        c.explain_fn, epsilon=s.attribution_epsilon, num_steps=s.attack_steps, k=_k(c)
    )
    out = _attacked(c, attack)
    del out["attack_score"]  # The top-k intersection itself.
    return out


def _targeted_attack(c: Case) -> dict[str, jax.Array]:
    s = c.settings
    h, w = c.x.shape[1:3]  # x is [B, H, W, C]
    frame = attacks.frame_target((h, w), width=max(1, h // 8))
    # As the reference runs it (RobustAGA's test_taps_saps.py): max-normalised maps, the
    # mean squared logit difference, Adam at 4ε/T.
    steps = int(s.manipulation_steps)
    attack = attacks.targeted_manipulation(
        c.explain_fn,
        epsilon=s.attribution_epsilon,
        num_steps=steps,
        learning_rate=4 * s.attribution_epsilon / steps,
        target_map=frame,
        normalization="max",
        output="logits",
    )
    out = _attacked(c, attack, target_map=frame)
    out["target_distance"] = out.pop("attack_score")
    return out


def _rps(c: Case) -> dict[str, jax.Array]:
    # A tuple of similarities gives a dict of them (a single name gives one array).
    return cast(
        dict[str, jax.Array],
        metrics.random_perturbation_similarity(
            c.explain_at,
            c.x,
            key=c.key,
            epsilon=c.settings.rps_epsilon,
            similarity=("pearson", "ssim"),
        ),
    )


def _region(c: Case) -> jax.Array:
    if "bbox" not in c.extras:
        raise ValueError(
            "the localisation metrics need a dataset with boxes (digits_canvas, mnist_canvas)"
        )
    return metrics.box_mask(c.extras["bbox"], c.x.shape[1:3])


def _retrieval(c: Case) -> dict[str, jax.Array]:
    s = c.settings
    attack = attacks.pgd(epsilon=s.epsilon, num_steps=s.attack_steps)
    x_adv = attack(c.apply_fn, c.params, c.x, c.target, key=c.key)
    flipped = jnp.argmax(c.apply_fn(c.params, x_adv), -1) != c.target
    a_adv = c.explain_at(x_adv)
    hit = metrics.retrieval(c.apply_fn, c.params, x_adv, a_adv, c.target)
    return {"retrieval": hit, "attack_success": flipped.astype(jnp.float32)}


def _ape(c: Case) -> dict[str, jax.Array]:
    s = c.settings
    return metrics.ape(
        c.apply_fn,
        c.params,
        c.x,
        c.target,
        c.attr,
        epsilon=s.epsilon,
        num_steps=s.attack_steps,
        fraction=s.ape_fraction,
    )


def _robust_accuracy(c: Case) -> dict[str, jax.Array]:
    # ``jaxinterp evaluate`` passes the model's predictions as ``target``: without true labels
    # in ``extras["labels"]``, "clean" is 1 and "robust" is the share of stable predictions.
    s = c.settings
    suite = {
        **attacks.autoattack_like(s.epsilon, num_steps=s.attack_steps),
        "pgd": attacks.pgd(epsilon=s.epsilon, num_steps=s.attack_steps),
    }
    labels = c.extras.get("labels", c.target)
    return metrics.robust_accuracy(c.apply_fn, c.params, c.x, labels, suite, key=c.key)


def _deletion(c: Case) -> dict[str, jax.Array]:
    auc = metrics.deletion_auc(
        c.score(), c.x, c.attr, num_steps=c.settings.deletion_steps, substrate="zeros"
    )
    return {"auc": auc}


def _insertion(c: Case) -> dict[str, jax.Array]:
    auc = metrics.insertion_auc(
        c.score(), c.x, c.attr, num_steps=c.settings.deletion_steps, substrate="blur"
    )
    return {"auc": auc}


def _infidelity(c: Case) -> dict[str, jax.Array]:
    value = metrics.infidelity(
        c.score("logit"), c.x, c.attr, key=c.key, num_samples=c.settings.num_samples
    )
    return {"value": value}


def _max_sensitivity(c: Case) -> dict[str, jax.Array]:
    s = c.settings
    value = metrics.max_sensitivity(
        c.explain_at, c.x, key=c.key, radius=s.sensitivity_radius, num_samples=s.num_samples
    )
    return {"value": value}


METRICS = Registry("metric")
"""Evaluation metrics by name: ``METRICS[name](case) -> {value name: [B]}``. Tags:
``differentiable`` (attacks the explanation: needs a differentiable explainer), ``boxes``
(needs ground-truth boxes)."""
METRICS.register("deletion", _deletion, summary="deletion AUC (zeros)")
METRICS.register("insertion", _insertion, summary="insertion AUC (from a blur)")
METRICS.register("infidelity", _infidelity, summary="infidelity (Yeh et al.)")
METRICS.register(
    "completeness",
    lambda c: {
        "delta": metrics.completeness_delta(c.score("logit"), c.x, c.attr, jnp.zeros_like(c.x))
    },
    summary="completeness gap from a zero baseline",
)
METRICS.register("max_sensitivity", _max_sensitivity, summary="max-sensitivity")
METRICS.register("rps", _rps, summary="random perturbation similarity")
METRICS.register("topk_attack", _topk_attack, summary="top-k attribution attack", tags=_DIFF)
METRICS.register("targeted_attack", _targeted_attack, summary="targeted manipulation", tags=_DIFF)
METRICS.register(
    "energy_game",
    lambda c: {"value": metrics.energy_game(c.attr, _region(c))},
    summary="energy inside the box",
    tags=("boxes",),
)
METRICS.register(
    "pointing_game",
    lambda c: {"value": metrics.pointing_game(c.attr, _region(c))},
    summary="top pixel inside the box",
    tags=("boxes",),
)
METRICS.register("gini", lambda c: {"value": metrics.gini(c.attr)}, summary="Gini sparseness")
METRICS.register("retrieval", _retrieval, summary="RelEx retrieval rate under PGD")
METRICS.register("ape", _ape, summary="adversarial perturbation effect")
METRICS.register("robust_accuracy", _robust_accuracy, summary="robust accuracy: APGD-CE/T, PGD")


# Metrics that explain other inputs only (never the attribution at ``x``).
NO_ATTRIBUTION = ("retrieval", "robust_accuracy")


def needs(metric: str) -> str | None:
    """What ``metric`` needs beyond a batch: ``"differentiable"``, ``"boxes"`` or ``None``."""
    tags = METRICS.get(metric).tags
    return next((t for t in ("differentiable", "boxes") if t in tags), None)
