"""Local gradient alignment, l2 + cosine (METHODS §1.3; Joo et al. 2023) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("lga", "cifar10")
