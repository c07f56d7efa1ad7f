"""Local gradient alignment, l2 + cosine (METHODS §1.3; Joo et al. 2023) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("lga", "cifar10")
