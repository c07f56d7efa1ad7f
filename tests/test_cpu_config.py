"""configure_cpu / cpu_flags: the library's XLA:CPU settings, never overriding the user's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import jaxinterp
from jaxinterp import cpu_flags
from jaxinterp._cpu import _glibc, preferred_vector_width

YNN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
# The vector-width flag this machine gets (only on AMD CPUs with AVX-512).
WIDE = "".join(f" --xla_cpu_prefer_vector_width={w}" for w in [preferred_vector_width()] if w)
FAST = YNN + WIDE


def _fresh_stdout(code: str, *args: str) -> str:
    """The stdout of ``python -c code *args`` in a fresh process without ``XLA_FLAGS``."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def test_flags_added_to_empty():
    assert cpu_flags("", devices=2) == f"--xla_force_host_platform_device_count=2 {FAST}"
    assert cpu_flags("", devices=1) == FAST
    assert cpu_flags("", devices=3, fast_kernels=False) == (
        "--xla_force_host_platform_device_count=3"
    )
    assert cpu_flags("") == FAST  # one device by default
    assert cpu_flags("", devices=None) == cpu_flags("", devices=os.cpu_count() or 1)


def test_user_flags_win():
    mine = (
        "--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type=dot"
        " --xla_cpu_prefer_vector_width=256"
    )
    assert cpu_flags(mine, devices=2) == mine
    assert cpu_flags("--xla_dump_to=/tmp/x", devices=1) == f"--xla_dump_to=/tmp/x {FAST}"


_CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
cpu family\t: 25
model name\t: a CPU
flags\t\t: fpu sse2 avx2 {avx512}
power management:
"""


@pytest.mark.parametrize(
    ("vendor", "avx512", "width"),
    [
        ("AuthenticAMD", "avx512f avx512bw", 512),
        ("AuthenticAMD", "", None),  # Zen 3 and older: AVX2 only
        ("GenuineIntel", "avx512f avx512bw", None),  # Intel keeps XLA's default
        ("GenuineIntel", "", None),
    ],
)
def test_512_bit_vectors_only_on_amd_with_avx512(vendor, avx512, width):
    info = _CPUINFO.format(vendor=vendor, avx512=avx512)
    assert preferred_vector_width(info) == width
    assert preferred_vector_width("") is None


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


def test_fresh_process_gets_the_devices_asked_for_and_the_fusion_setting():
    code = (
        "import os, jaxinterp; assert jaxinterp.configure_cpu(devices=3); import jax; "
        "print(jax.device_count(), os.environ['XLA_FLAGS'])"
    )
    out = _fresh_stdout(code).split(maxsplit=1)
    assert out[0] == "3" and FAST in out[1]


def test_subpackages_are_lazy_attributes():
    assert set(jaxinterp.SUBPACKAGES) <= set(dir(jaxinterp))
    assert jaxinterp.attribution.integrated_gradients is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxinterp.nope  # noqa: B018


# Elementwise functions the library uses (CW's tanh box, softplus, sigmoid, log-softmax), and
# a train-step-like conv backward, in a fresh process under the flags configure_cpu sets. An
# XLA:CPU flag that miscompiles any of them (YNNPACK's eltwise fusion computes arctanh wrong
# in jaxlib 0.10.2) must not be a default.
_NUMERICS = """
import jaxinterp
assert jaxinterp.configure_cpu(devices=1)
import jax, jax.numpy as jnp, numpy as np
x = np.random.default_rng(0).uniform(size=(8, 32, 32, 3)).astype(np.float32)
fns = {
    "box": (lambda v: (jnp.tanh(jnp.arctanh((2 * v - 1) * 0.999999)) + 1) / 2, lambda v: v),
    "arctanh": (lambda v: jnp.arctanh(v * 0.99), lambda v: np.arctanh(v * 0.99)),
    "softplus": (lambda v: jax.nn.softplus(8 * v - 4), lambda v: np.log1p(np.exp(8 * v - 4))),
    "sigmoid": (jax.nn.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
    "log_softmax": (lambda v: jax.nn.log_softmax(v, -1),
                    lambda v: v - np.log(np.exp(v).sum(-1, keepdims=True))),
}
worst = max(float(np.max(np.abs(np.asarray(jax.jit(f)(x)) - g(x.astype(np.float64)))))
            for f, g in fns.values())
w = np.random.default_rng(1).normal(size=(3, 3, 3, 4)).astype(np.float32)
conv = lambda v, k: jax.lax.conv_general_dilated(v, k, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
gk = jax.jit(jax.grad(lambda k: jnp.sum(jnp.tanh(conv(x, k)))))(w)
with jax.enable_x64(True):
    ref = jax.grad(lambda k: jnp.sum(jnp.tanh(conv(jnp.asarray(x, jnp.float64), k))))(
        jnp.asarray(w, jnp.float64))
print(worst, float(np.max(np.abs(np.asarray(gk) - np.asarray(ref))) / np.max(np.abs(ref))))
"""


def test_default_flags_compute_correct_values():
    out = _fresh_stdout(_NUMERICS).split()
    elementwise, conv_grad = float(out[0]), float(out[1])
    assert elementwise < 1e-5 and conv_grad < 1e-4


# A jitted call with a 34 MB scratch buffer, in a fresh process: the minor page faults of
# one call once warm (the least of 3 windows of 4 calls), with and without reuse_memory.
# Without it glibc maps the buffer anew on every call.
_FAULTS = """
import resource, sys
import jaxinterp
assert jaxinterp.configure_cpu(devices=1, reuse_memory=sys.argv[1] == "1")
import jax, jax.numpy as jnp
x = jnp.ones((2048, 2048))
f = jax.jit(lambda x: (jnp.sin(x) @ jnp.cos(x)).sum())
assert f.lower(x).compile().memory_analysis().temp_size_in_bytes >= 32 * 2**20
for _ in range(12):  # with the setting, the heap grows for a few calls, then stays
    f(x).block_until_ready()
windows = []
for _ in range(3):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        f(x).block_until_ready()
    windows.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 4)
print(min(windows))
"""


@pytest.mark.skipif(not _glibc(), reason="reuse_memory is a glibc malloc setting")
def test_reuse_memory_stops_the_page_faults_of_every_call():
    def faults(reuse: bool) -> float:
        return float(_fresh_stdout(_FAULTS, str(int(reuse))).split()[-1])

    without, with_reuse = faults(False), faults(True)
    # 34 MB is ~8,200 pages of 4 KiB: without the setting nearly all of them fault each call.
    assert without > 4000 and with_reuse * 4 < without, (without, with_reuse)


def _options(jitted, *args) -> dict:
    """The XLA compile options ``jitted`` compiles ``args`` with."""
    return dict(jitted.lower(*args)._lowering._compiler_options_kvs)


def test_jit_few_runs_compiles_lighter_on_cpu_and_keeps_values():
    import jax
    import jax.numpy as jnp

    from jaxinterp.experiments.jitting import FEW_RUNS_CPU_OPTIONS, jit_few_runs

    def f(x):
        return jnp.sin(x) * jnp.exp(-x) + jnp.log1p(x)

    x = jnp.linspace(0.0, 3.0, 1000)
    assert jax.default_backend() == "cpu"
    few = jit_few_runs(f)
    assert _options(few, x) == FEW_RUNS_CPU_OPTIONS == {"xla_backend_optimization_level": 1}
    assert _options(jax.jit(f), x) == {}
    assert jnp.allclose(few(x), jax.jit(f)(x), rtol=1e-6, atol=1e-6)


def test_jit_few_runs_keeps_the_callers_options():
    import jax.numpy as jnp

    from jaxinterp.experiments.jitting import jit_few_runs

    x = jnp.ones(3)
    mine = jit_few_runs(lambda v: v * 2, compiler_options={"xla_backend_optimization_level": 0})
    assert _options(mine, x) == {"xla_backend_optimization_level": 0}
    with pytest.raises(Exception, match="no_such_option"):  # passed on to XLA, which refuses it
        jit_few_runs(lambda v: v, compiler_options={"no_such_option": 1})(x)
