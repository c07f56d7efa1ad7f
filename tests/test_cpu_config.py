"""configure_cpu / cpu_flags: the library's XLA:CPU settings, never overriding the user's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import jaxinterp
from jaxinterp import cpu_flags

YNN = "--xla_cpu_experimental_ynn_fusion_type=eltwise,reduce"


def test_flags_added_to_empty():
    assert cpu_flags("", devices=2) == f"--xla_force_host_platform_device_count=2 {YNN}"
    assert cpu_flags("", devices=1) == YNN
    assert cpu_flags("", devices=3, fast_kernels=False) == (
        "--xla_force_host_platform_device_count=3"
    )
    assert cpu_flags("") == cpu_flags("", devices=os.cpu_count() or 1)


def test_user_flags_win():
    mine = "--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type=dot"
    assert cpu_flags(mine, devices=2) == mine
    assert cpu_flags("--xla_dump_to=/tmp/x", devices=1) == f"--xla_dump_to=/tmp/x {YNN}"


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "2"])
def test_bad_devices(bad):
    with pytest.raises(ValueError, match="devices must be an integer >= 1"):
        cpu_flags("", devices=bad)


def test_too_late_once_jax_started():
    import jax

    jax.devices()
    before = os.environ.get("XLA_FLAGS")
    assert jaxinterp.configure_cpu() is False
    assert os.environ.get("XLA_FLAGS") == before


def test_fresh_process_gets_one_device_per_core_and_the_fusion_setting():
    code = (
        "import os, jaxinterp; assert jaxinterp.configure_cpu(devices=3); import jax; "
        "print(jax.device_count(), os.environ['XLA_FLAGS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    assert out[0] == "3" and YNN in out[1]


def test_subpackages_are_lazy_attributes():
    assert set(jaxinterp.SUBPACKAGES) <= set(dir(jaxinterp))
    assert jaxinterp.attribution.integrated_gradients is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxinterp.nope  # noqa: B018
