"""PGD adversarial training (Madry et al. 2018, METHODS §1.6) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("cifar10")
    c.ce_weight = 0.0  # Madry et al. train on adversarial examples only
    c.penalties.pgd_at = ml_collections.ConfigDict(
        dict(
            penalty="adversarial_training",
            weight=1.0,
            epsilon=8 / 255,
            num_steps=10,
            step_size=2 / 255,
        )
    )
    return c
