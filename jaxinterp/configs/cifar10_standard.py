"""Standard training of the LeNet-style softplus CNN on CIFAR-10.

Reference setting of Joo et al. (AAAI 2023) for the CIFAR-10 LeNet: Softplus(β=3), Adam 1e-3,
weight decay 4e-5, batch 128, gradient clipping at norm 0.5. Needs the data:
`jaxinterp prepare --dataset cifar10`.
"""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("standard", "cifar10")
