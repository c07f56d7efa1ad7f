"""The fields every training config has, with their defaults.

The packaged configs (:mod:`jaxinterp.configs`) start from :func:`base_config` and change
what their experiment needs; ``--config.FIELD=VALUE`` on the command line can then set any
of these fields; :func:`check_config` refuses values outside their range before a run starts.
"""

from __future__ import annotations

import numbers
from typing import Any

import ml_collections

from jaxinterp.core import checks

__all__ = [
    "EXPERIMENTS",
    "MAX_SEED",
    "base_config",
    "check_config",
    "check_seed",
    "experiment_config",
    "penalty_spec",
    "standard_config",
]

MAX_SEED = 2**63 - 1
"""The largest seed: ``jax.random.PRNGKey`` takes a seed that fits an int64."""


def base_config() -> ml_collections.ConfigDict:
    """Defaults: softplus CNN on ``digits``, Adam with a cosine schedule, no penalty."""
    c = ml_collections.ConfigDict()
    # Data.
    c.dataset = "digits"
    c.data_dir = ""  # "" -> $JAXINTERP_DATA_DIR, $TFDS_DATA_DIR or ~/.cache/jaxinterp/...
    # Model.
    c.model = "cnn"  # mlp | cnn | resnet18
    c.activation = "softplus"  # softplus | relu
    c.beta = 3.0  # softplus sharpness
    c.model_kwargs = ml_collections.ConfigDict()  # e.g. hidden=(256, 256) for the MLP
    # Optimisation.
    c.seed = 0
    c.batch_size = 128  # global, over all devices and processes
    c.eval_batch_size = 256
    c.num_steps = 500
    c.optimizer = "adam"  # sgd | momentum | adam | adamw
    c.learning_rate = 1e-3
    c.schedule = "cosine"  # constant | cosine | warmup_cosine
    c.warmup_steps = 0
    c.weight_decay = 0.0
    c.momentum = 0.9
    c.grad_clip_norm = 0.0  # 0: no clipping
    c.ce_weight = 1.0  # weight of the clean cross-entropy (0: train on the penalties alone)
    # Penalties: name -> dict(weight=..., **hyperparameters); empty trains on cross-entropy.
    c.penalties = ml_collections.ConfigDict()
    # Logging and checkpoints.
    c.log_every = 50
    c.eval_every = 0  # 0: evaluate at the end only
    c.checkpoint_every = 100
    c.keep_checkpoints = 3
    c.tensorboard = False  # also write the scalars as TensorBoard events (tensorboardX)
    # Devices.
    c.num_devices = 0  # 0: all devices
    c.distributed = ml_collections.ConfigDict()
    c.distributed.enabled = False  # call jax.distributed.initialize()
    c.distributed.coordinator_address = ""  # "" -> auto-detect (TPU, Slurm, ...)
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    return c


def check_seed(name: str, value: Any) -> int:
    """``value`` as a seed: an integer in ``[0, MAX_SEED]`` (the RNGs refuse others).

    Raises:
      ArgumentTypeError: ``value`` is not an integer.
      ValueError: ``value`` is negative or above :data:`MAX_SEED`; the message names ``name``.
    """
    return checks.integer(name, value, minimum=0, maximum=MAX_SEED)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses a training config whose ``seed``, ``keep_checkpoints`` or loss weights are bad.

    Runs before anything is written to the workdir; each message names the config field. The
    other fields are checked when the run starts (``jaxinterp.experiments.train``) and by the
    factories that take them (penalty weights: :func:`jaxinterp.regularizers.combine`).

    Raises:
      ArgumentTypeError: A field of the wrong type.
      ValueError: ``seed`` outside ``[0, MAX_SEED]``, ``keep_checkpoints < 1``,
        ``ce_weight < 0``, or ``ce_weight = 0`` with no penalty of weight > 0 (nothing to
        train on).
    """
    check_seed("config.seed", config.seed)
    checks.integer("config.keep_checkpoints", config.keep_checkpoints, minimum=1)
    ce_weight = checks.nonnegative("config.ce_weight", config.ce_weight)
    weights = [
        spec.get("weight")
        for spec in config.penalties.values()
        if isinstance(spec, ml_collections.ConfigDict)
    ]
    if ce_weight == 0 and not any(
        isinstance(w, numbers.Real) and not isinstance(w, bool) and w != 0 for w in weights
    ):
        raise ValueError(
            "config.ce_weight is 0 and no penalty in config.penalties has a weight > 0: the "
            "loss would be 0 (nothing to train on)"
        )


def standard_config(dataset: str) -> ml_collections.ConfigDict:
    """Standard (cross-entropy only) training on ``digits``, ``mnist5k``, ``mnist`` or ``cifar10``.

    ``mnist5k`` (4,000 training images) trains for about 32 epochs at batch 128.

    ``cifar10`` follows the CIFAR-10 LeNet reference of Joo et al. (AAAI 2023): Softplus
    (β = 3), Adam 1e-3, weight decay 4e-5, batch 128, gradient clipping at norm 0.5.
    """
    c = base_config()
    c.dataset = dataset
    if dataset == "digits":
        return c
    c.log_every = 100
    if dataset == "mnist":
        c.num_steps = 5_000  # ~10 epochs at batch 128
        c.checkpoint_every = 1_000
        c.eval_every = 1_000
    elif dataset == "mnist5k":
        c.num_steps = 1_000  # ~32 epochs of 32 steps at batch 128
        c.checkpoint_every = 250
        c.eval_every = 250
    elif dataset == "cifar10":
        c.weight_decay = 4e-5
        c.grad_clip_norm = 0.5
        c.num_steps = 39_100  # 100 epochs of 391 steps
        c.checkpoint_every = 2_000
        c.eval_every = 3_910
    else:
        raise ValueError(f"no standard config for dataset {dataset!r}")
    return c


# The attack radius of the adversarial baselines per dataset: (epsilon, num_steps, step_size).
_ATTACK = {
    "digits": (0.1, 5, None),
    "digits_canvas": (0.1, 5, None),
    "mnist": (0.3, 40, 0.01),
    "mnist5k": (0.3, 40, 0.01),
    "mnist_canvas": (0.3, 40, 0.01),
    "cifar10": (8 / 255, 10, 2 / 255),
}
# The local-gradient-alignment noise radius per dataset (4/255 on CIFAR-10, Joo et al.).
_LGA_EPSILON = {
    "digits": 0.05,
    "digits_canvas": 0.05,
    "mnist": 0.05,
    "mnist5k": 0.05,
    "mnist_canvas": 0.05,
    "cifar10": 4 / 255,
}
_CURE_H = {
    "digits": 0.05,
    "digits_canvas": 0.05,
    "mnist": 0.05,
    "mnist5k": 0.05,
    "mnist_canvas": 0.05,
    "cifar10": 1.5 / 255,
}
# A canvas dataset trains like the dataset its digits come from (and keeps its own penalties).
_CANVAS_OF = {"digits_canvas": "digits", "mnist_canvas": "mnist5k"}

# experiment name -> the penalty entry it adds to the standard config (none for standard).
EXPERIMENTS = ("standard", "input_grad", "hessian", "lga", "act_sens", "cure", "pgd_at", "trades")


def penalty_spec(experiment: str, dataset: str) -> dict:
    """The ``config.penalties`` entry of ``experiment`` on ``dataset`` (the reference values).

    Raises:
      ValueError: for an unknown experiment or dataset.
    """
    if experiment not in EXPERIMENTS or experiment == "standard":
        raise ValueError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS[1:])}")
    if dataset not in _ATTACK:
        raise ValueError(
            f"no experiment configs for dataset {dataset!r}; known: {', '.join(_ATTACK)}"
        )
    eps, steps, step_size = _ATTACK[dataset]
    attack = dict(epsilon=eps, num_steps=steps)
    if step_size is not None:
        attack["step_size"] = step_size
    return {
        "input_grad": dict(penalty="input_gradient_norm", weight=0.1),
        "hessian": dict(penalty="hessian_norm", weight=1e-3, num_probes=1, score="logit"),
        "lga": dict(
            penalty="gradient_alignment",
            weight=1.0,
            lambda_l2=0.01,
            lambda_cos=1.0,
            epsilon=_LGA_EPSILON[dataset],
        ),
        "act_sens": dict(
            penalty="activation_sensitivity", weight=0.1, estimator="jvp", num_probes=1
        ),
        "cure": dict(penalty="curvature", weight=1.0, h=_CURE_H[dataset]),
        "pgd_at": dict(penalty="adversarial_training", weight=1.0, **attack),
        "trades": dict(penalty="trades", weight=6.0, **attack),
    }[experiment]


def experiment_config(experiment: str, dataset: str) -> ml_collections.ConfigDict:
    """:func:`standard_config` of ``dataset`` plus the penalty of ``experiment``.

    ``pgd_at`` trains on adversarial examples only (``ce_weight = 0``, Madry et al.). A canvas
    dataset (``digits_canvas``, ``mnist_canvas``) takes the standard config of its digits'
    dataset (``digits``, ``mnist5k``).
    """
    if dataset in _CANVAS_OF:
        c = standard_config(_CANVAS_OF[dataset])
        c.dataset = dataset
    else:
        c = standard_config(dataset)
    if experiment == "standard":
        return c
    c.penalties[experiment] = ml_collections.ConfigDict(penalty_spec(experiment, dataset))
    if experiment == "pgd_at":
        c.ce_weight = 0.0
    return c
