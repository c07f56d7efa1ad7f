"""Local gradient alignment, l2 + cosine (METHODS §1.3; Joo et al. 2023) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("cifar10")
    c.penalties.lga = ml_collections.ConfigDict(
        dict(
            penalty="gradient_alignment",
            weight=1.0,
            lambda_l2=0.01,
            lambda_cos=1.0,
            epsilon=4 / 255,
        )
    )
    return c
