"""PGD adversarial training (Madry et al. 2018, METHODS §1.6) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("pgd_at", "cifar10")
