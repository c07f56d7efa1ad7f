"""PGD adversarial training (Madry et al. 2018, METHODS §1.6) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("mnist")
    c.ce_weight = 0.0  # Madry et al. train on adversarial examples only
    c.penalties.pgd_at = ml_collections.ConfigDict(
        dict(penalty="adversarial_training", weight=1.0, epsilon=0.3, num_steps=40, step_size=0.01)
    )
    return c
