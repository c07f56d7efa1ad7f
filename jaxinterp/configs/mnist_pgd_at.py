"""PGD adversarial training (Madry et al. 2018, METHODS §1.6) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("pgd_at", "mnist")
