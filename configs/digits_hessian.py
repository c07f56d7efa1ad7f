"""Hessian norm by Hutchinson probes (METHODS §1.2) on digits."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("digits")
    c.penalties.hessian = ml_collections.ConfigDict(
        dict(penalty="hessian_norm", weight=1e-3, num_probes=1, score="logit")
    )
    return c
