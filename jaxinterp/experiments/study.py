"""The study ``jaxinterp reproduce`` runs: which models, how long, how many examples.

The packaged ``reproduce_*`` configs (:mod:`jaxinterp.configs`) return :func:`study_config`
for a dataset (default: the embedded real-MNIST subset ``mnist5k``, with ``mnist_canvas`` for
localisation); ``--quick`` applies :func:`quick` (one seed, shorter training, fewer
examples), sized to finish within 15 minutes on a 2-core CPU. :func:`check_study` refuses a
study that would fail part way (before any model is trained).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxinterp.core import checks
from jaxinterp.experiments.defaults import check_config, check_seed, experiment_config

__all__ = ["MODELS", "check_study", "model_config", "quick", "study_config"]

# The models the claims of METHODS §5 compare (all softplus CNNs).
MODELS = ("standard", "pgd_at", "trades", "hessian", "lga", "act_sens")


def study_config(dataset: str = "mnist5k") -> ml_collections.ConfigDict:
    """The full study on ``dataset`` (``mnist5k``, ``digits``, ``mnist`` or ``cifar10``).

    Fields:
      dataset: Training and evaluation data of the six models.
      localisation_dataset: A dataset with a digit box and a distractor box for the distractor
        game of claims 3 and 5 (``""``: none, that part is then not measured).
      seeds: One model per experiment and seed; a check needs >= 3 seeds to be decided.
      model, model_kwargs: Another architecture for every model (e.g. a small MLP for a smoke
        test); ``""`` keeps the experiment configs' softplus CNN.
      cnn_kwargs: With ``model = ""``: the width of that CNN for the six models (default
        channels (16, 16, 32, 32), hidden 64: a quarter of the CNN's default FLOPs, so that
        three seeds of the study fit 90 minutes on a 2-core CPU; ``{}``: the CNN's default).
      num_steps: Training steps per model (0: the experiment config's own).
      robust_attack_steps: PGD steps of the PGD-AT and TRADES training attacks, which then
        use the evaluation radius ``eval.epsilon`` (0: the experiment configs' own attack; 1:
        FGSM from a random start, α = 1.25 ε, as in "fast" adversarial training, and PGD-AT
        then trains on ``0.5·CE(x) + 0.5·CE(x_adv)``, Goodfellow et al.'s mixed objective).
      batch_size: Training batch of every model (0: the experiment configs' own).
      localisation_model_kwargs, localisation_beta, localisation_learning_rate: The (smaller)
        softplus CNN trained on the localisation data, and its optimiser step.
      num_examples: Test examples evaluated per model; eval_batch_size: their batch.
      localisation_num_examples: The same on the localisation data.
      eval: :class:`jaxinterp.experiments.metric_suite.Settings` fields.
      gates: Thresholds of the sanity gates (:data:`jaxinterp.experiments.claims.DEFAULT_GATES`
        for the names; a failed gate makes the checks that need it inconclusive).
      protocol: Per-claim settings: ``rps_radii`` (claim 2); ``boundary_examples``,
        ``boundary_epsilons`` (the L2 PGD ladder of the boundary search),
        ``boundary_radius``, ``cw_binary_search_steps``, ``targeted_epsilon``,
        ``targeted_steps`` (claim 3); ``retrieval_epsilons``, ``relex_samples``,
        ``relex_iterations`` (claim 4).
      num_figure_examples: Rows of the attribution grids; figure_models: the models drawn
        (``()``: all).
      data_dir: TFDS data dir ("" -> the default).
    """
    s = ml_collections.ConfigDict()
    s.dataset = dataset
    # The localisation part needs a distractor box (digits_canvas has none).
    s.localisation_dataset = "mnist_canvas" if dataset == "mnist5k" else ""
    s.seeds = (0, 1, 2)
    s.model = ""  # "" -> the experiment configs' softplus CNN; else a model name for all
    s.model_kwargs = ml_collections.ConfigDict()  # with `model`: its architecture options
    s.cnn_kwargs = ml_collections.ConfigDict(dict(channels=(16, 16, 32, 32), hidden=64))
    s.num_steps = {"digits": 1000, "mnist5k": 400}.get(dataset, 0)
    s.robust_attack_steps = 1 if dataset in ("digits", "mnist5k") else 0
    s.batch_size = 64 if dataset in ("digits", "mnist5k") else 0
    s.localisation_num_steps = 1200
    s.localisation_model_kwargs = ml_collections.ConfigDict(
        dict(channels=(16, 16, 32, 32), hidden=64)
    )
    # A sharper softplus and a larger step: with β = 3 the CNN does not leave chance level
    # on the noisy 32×32 canvas within these steps (β = 20 reached 74 % test accuracy in 300).
    s.localisation_beta = 20.0
    s.localisation_learning_rate = 2e-3
    # Sized so that three seeds fit 90 minutes on a 2-core CPU; 150 examples leave >= 100
    # that PGD flips at ε = 0.15 (claim 4's gate; the standard CNN's attack success is ~0.75).
    s.num_examples = {"digits": 360, "mnist5k": 150}.get(dataset, 1000)
    s.eval_batch_size = 75
    s.localisation_num_examples = 60
    small = dataset in ("digits", "mnist5k")
    s.eval = ml_collections.ConfigDict(
        dict(
            epsilon=0.15 if small else (0.3 if dataset == "mnist" else 8 / 255),
            attack_steps=40,
            attribution_epsilon=0.05 if dataset != "cifar10" else 4 / 255,
            topk_fraction=0.1,
            rps_epsilon=4 / 255,
            sensitivity_radius=0.02,
            num_samples=8,
            deletion_steps=16,
            ape_fraction=0.1,
            manipulation_steps=100,
        )
    )
    s.gates = ml_collections.ConfigDict(dict(accuracy=0.8 if dataset != "cifar10" else 0.6))
    s.protocol = ml_collections.ConfigDict(
        dict(
            rps_radii=(4 / 255, 8 / 255, 16 / 255),
            boundary_examples=50,
            boundary_epsilons=(0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
            boundary_radius=1.0,
            cw_binary_search_steps=4,
            targeted_epsilon=6.0,
            targeted_steps=40,
            retrieval_epsilons=(0.15, 0.3) if small else (0.3,),
            relex_samples=10,
            relex_iterations=50,
        )
    )
    s.num_figure_examples = 6
    s.figure_models = ()  # () -> every model (first seed); the localisation model always
    s.data_dir = ""
    return s


# Fields a study may leave out (read with .get()); every other field of study_config is needed.
_OPTIONAL = ("batch_size", "cnn_kwargs", "robust_attack_steps")


def check_study(study: Any, source: str = "the study config") -> None:
    """Refuses a config that is not a study, or a study that would fail part way.

    Checks that ``study`` has the fields of :func:`study_config`, at least one seed (each
    an integer in ``[0, MAX_SEED]``), ``num_examples, eval_batch_size >= 1``, and that the
    training config of every model it trains (:func:`model_config`) passes
    :func:`~jaxinterp.experiments.defaults.check_config`. Nothing is trained or written.

    Args:
      study: The study config.
      source: What it came from, for the message (e.g. ``--config digits_standard``).

    Raises:
      TypeError: ``study`` is not a ``ConfigDict``.
      ValueError: Missing fields (e.g. a training config given as a study), no seeds, or a
        value out of range; the message names the field.
    """
    if not isinstance(study, ml_collections.ConfigDict):
        raise TypeError(f"{source} must be an ml_collections.ConfigDict, got {type(study)}")
    missing = [k for k in study_config() if k not in study and k not in _OPTIONAL]
    if missing:
        more = ", ..." if len(missing) > 4 else ""
        raise ValueError(
            f"{source} is not a study config: it has no {', '.join(missing[:4])}{more} "
            "(reproduce takes a reproduce_* config or a file returning study_config(...))"
        )
    seeds = checks.sequence("study.seeds", study.seeds, of=check_seed)
    checks.integer("study.num_examples", study.num_examples)
    checks.integer("study.eval_batch_size", study.eval_batch_size)
    for seed in seeds:
        for name in MODELS:
            check_config(model_config(study, name, seed))
        if study.localisation_dataset:
            check_config(model_config(study, "standard", seed, localisation=True))


def quick(study: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The ``--quick`` version of ``study``: one seed (so every check is inconclusive: no
    seed noise to compare a gap with), fewer steps and examples, smaller gates' counts."""
    s = ml_collections.ConfigDict(study.to_dict())
    s.seeds = (int(study.seeds[0]),)
    if s.num_steps:
        s.num_steps = max(1, s.num_steps // 2)
    s.num_examples = min(s.num_examples, 60)
    s.localisation_num_examples = min(s.localisation_num_examples, 40)
    s.eval_batch_size = min(s.eval_batch_size, 60)
    s.num_figure_examples = min(s.num_figure_examples, 4)
    s.figure_models = ("standard",)
    s.eval.attack_steps = min(s.eval.attack_steps, 20)
    if "manipulation_steps" in s.eval:
        s.eval.manipulation_steps = min(s.eval.manipulation_steps, 50)
    s.gates.min_flipped = 30
    s.protocol.boundary_examples = min(s.protocol.boundary_examples, 30)
    s.protocol.cw_binary_search_steps = min(s.protocol.cw_binary_search_steps, 3)
    s.protocol.retrieval_epsilons = tuple(s.protocol.retrieval_epsilons)[-1:]
    s.protocol.relex_samples = min(s.protocol.relex_samples, 10)
    return s


def model_config(
    study: ml_collections.ConfigDict, experiment: str, seed: int, *, localisation: bool = False
) -> ml_collections.ConfigDict:
    """The training config of one model of the study."""
    dataset = study.localisation_dataset if localisation else study.dataset
    c = experiment_config(experiment, dataset)
    c.seed = int(seed)
    c.data_dir = study.data_dir
    c.log_every = 100
    c.checkpoint_every = 200
    c.keep_checkpoints = 1
    if study.get("batch_size"):
        c.batch_size = int(study.batch_size)
    steps = study.localisation_num_steps if localisation else study.num_steps
    if steps:
        c.num_steps = int(steps)
        c.log_every = min(c.log_every, c.num_steps)
    if study.model:
        c.model = study.model
        c.model_kwargs = ml_collections.ConfigDict(study.model_kwargs.to_dict())
    elif localisation:
        c.model_kwargs = ml_collections.ConfigDict(study.localisation_model_kwargs.to_dict())
        c.beta = float(study.localisation_beta)
        c.learning_rate = float(study.localisation_learning_rate)
    elif study.get("cnn_kwargs"):
        c.model_kwargs = ml_collections.ConfigDict(study.cnn_kwargs.to_dict())
    if study.get("robust_attack_steps") and not localisation:
        # The robust baselines are trained at the radius they are evaluated at.
        for p in c.penalties.values():
            if p.penalty in ("adversarial_training", "trades"):
                p.epsilon = float(study.eval.epsilon)
                p.num_steps = int(study.robust_attack_steps)
                # One step: FGSM from a random start with α = 1.25 ε ("fast" adversarial
                # training, Wong, Rice, Kolter, ICLR 2020); else PGD's 2.5 ε / K.
                p.step_size = (1.25 if p.num_steps == 1 else 2.5 / p.num_steps) * p.epsilon
                if p.penalty == "adversarial_training" and p.num_steps == 1:
                    # Trained on one-step examples alone (ce_weight 0), the CNN stays at
                    # chance for most of a short run (test accuracy 0.30 after 200 steps at
                    # ε = 0.15); the mixed objective α·CE(x) + (1 − α)·CE(x_adv), α = 0.5, of
                    # Goodfellow, Shlens, Szegedy (ICLR 2015) reached 0.94 (PGD-20: 0.59).
                    c.ce_weight = 0.5
                    p.weight = 0.5
    return c
