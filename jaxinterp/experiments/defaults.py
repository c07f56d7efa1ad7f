"""The fields every training config has, with their defaults.

``configs/*.py`` start from :func:`base_config` and change what their experiment needs;
``--config.FIELD=VALUE`` on the command line can then set any of these fields.
"""

from __future__ import annotations

import ml_collections

__all__ = ["base_config", "standard_config"]


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
    # Devices.
    c.num_devices = 0  # 0: all devices
    c.distributed = ml_collections.ConfigDict()
    c.distributed.enabled = False  # call jax.distributed.initialize()
    c.distributed.coordinator_address = ""  # "" -> auto-detect (TPU, Slurm, ...)
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    return c


def standard_config(dataset: str) -> ml_collections.ConfigDict:
    """Standard (cross-entropy only) training on ``digits``, ``mnist`` or ``cifar10``.

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
    elif dataset == "cifar10":
        c.weight_decay = 4e-5
        c.grad_clip_norm = 0.5
        c.num_steps = 39_100  # 100 epochs of 391 steps
        c.checkpoint_every = 2_000
        c.eval_every = 3_910
    else:
        raise ValueError(f"no standard config for dataset {dataset!r}")
    return c
