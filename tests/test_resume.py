"""A run killed with SIGKILL after a checkpoint and restarted ends as an uninterrupted one."""

import os
import signal
import time

import jax
import numpy as np

from jaxinterp.experiments import load_trained
from tests import _subprocess as sp

OVERRIDES = (
    "--config.num_steps=150", "--config.batch_size=32", "--config.checkpoint_every=10",
    "--config.log_every=10", "--config.keep_checkpoints=2",
)  # fmt: skip


def test_sigkill_then_restart_equals_uninterrupted(tmp_path, data_dir):
    sp.run(sp.train_command(str(tmp_path / "warm"), data_dir, "--config.num_steps=1"), 1)
    killed = str(tmp_path / "killed")
    proc = sp.start(sp.train_command(killed, data_dir, *OVERRIDES), 1)
    ckpt_dir = os.path.join(killed, "checkpoints")
    deadline = time.time() + 240
    while not (os.path.isdir(ckpt_dir) and "20" in os.listdir(ckpt_dir)):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint within the time limit"
        time.sleep(0.02)
    assert proc.poll() is None  # still training: the kill interrupts it
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_at_kill = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
    assert 20 <= steps_at_kill[-1] < 150

    sp.run(sp.train_command(killed, data_dir, *OVERRIDES), 1)
    straight = str(tmp_path / "straight")
    sp.run(sp.train_command(straight, data_dir, *OVERRIDES), 1)

    a, b = load_trained(killed), load_trained(straight)
    assert a.step == b.step == 150
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a.params), jax.device_get(b.params))
    with open(os.path.join(killed, "metrics.jsonl")) as f:
        steps = [line.split(",")[0] for line in f if "train/loss" in line]
    assert len(steps) == len(set(steps)) == 15  # no duplicated log lines after the restart
