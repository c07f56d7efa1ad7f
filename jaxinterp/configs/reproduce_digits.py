"""The claims study of METHODS §5 on the embedded 8x8 digits (no localisation part: the
digits canvas has no distractor). Fast, but its robustness metrics barely move at 8x8.
"""

import ml_collections

from jaxinterp.experiments.study import study_config


def get_config() -> ml_collections.ConfigDict:
    return study_config("digits")
