"""Local gradient alignment, l2 + cosine (METHODS §1.3; Joo et al. 2023) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("lga", "mnist")
