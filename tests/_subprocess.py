"""Running `jaxinterp train` in child processes (for kill/restart and multi-process tests)."""

import os
import socket
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIG = os.path.join(ROOT, "configs", "digits_standard.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(workdir: str, data_dir: str, *overrides: str) -> list[str]:
    return [
        sys.executable, "-m", "jaxinterp.cli", "train", "--config", CONFIG,
        "--workdir", workdir, f"--config.data_dir={data_dir}", *overrides,
    ]  # fmt: skip


def child_env(num_devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def start(cmd: list[str], num_devices: int) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=child_env(num_devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run(cmd: list[str], num_devices: int, timeout: float = 300) -> str:
    proc = subprocess.run(
        cmd, env=child_env(num_devices), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
