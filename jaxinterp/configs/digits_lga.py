"""Local gradient alignment, l2 + cosine (METHODS §1.3; Joo et al. 2023) on digits."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("lga", "digits")
