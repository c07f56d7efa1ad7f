"""Test settings: 4 fake CPU devices and strict numerics, set before JAX is imported."""

import os

from jaxinterp._cpu import cpu_flags  # noqa: E402  (imports no JAX)

# 4 host devices and the library's CPU kernels (no YNNPACK convolutions: the same values,
# about twice as fast on the CNN); a flag already in XLA_FLAGS is kept.
os.environ["XLA_FLAGS"] = cpu_flags(os.environ.get("XLA_FLAGS", ""), devices=4)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Importing `benchmarks` must not change the flags set here (it applies
# jaxinterp.configure_cpu with one device otherwise).
os.environ["JAXINTERP_XLA_DEFAULTS"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Strict dtype promotion is left off: optax 0.2.8's Adam bias correction (float ** int32)
# fails under it. Rank promotion is an error everywhere.


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """One TFDS data dir for the session, so the embedded datasets are prepared once."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))
