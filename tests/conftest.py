"""Test settings: 4 fake CPU devices and strict numerics, set before JAX is imported."""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=4".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests check values under XLA's default CPU kernels; importing `benchmarks` must not switch
# them (it applies jaxinterp.configure_cpu otherwise).
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
