"""The claims study of METHODS §5 on cifar10, for a machine with the data and an accelerator.

Needs the data: `jaxinterp prepare --dataset cifar10`. Trains each model with the cifar10 experiment
config's own schedule; there is no localisation data, so that part of claim 3 is not measured.
Run: `jaxinterp reproduce --config reproduce_cifar10 --out runs/reproduce_cifar10`.
"""

import ml_collections

from jaxinterp.experiments.study import study_config


def get_config() -> ml_collections.ConfigDict:
    return study_config("cifar10")
