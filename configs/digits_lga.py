"""Local gradient alignment, l2 + cosine (METHODS §1.3; Joo et al. 2023) on digits."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("digits")
    c.penalties.lga = ml_collections.ConfigDict(
        dict(penalty="gradient_alignment", weight=1.0, lambda_l2=0.01, lambda_cos=1.0, epsilon=0.05)
    )
    return c
