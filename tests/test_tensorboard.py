"""``config.tensorboard``: the scalars of ``metrics.jsonl`` also as TensorBoard event files
under ``<workdir>/tensorboard/``, through a resume; a one-line error without tensorboardX."""

import json
import os
import shutil
import struct
import sys

import numpy as np
import pytest

from jaxinterp import cli

TINY = (
    "--config.model=mlp", "--config.model_kwargs={'hidden': (16,)}", "--config.batch_size=16",
    "--config.eval_batch_size=16", "--config.num_devices=1", "--config.log_every=1",
    "--config.num_steps=3", "--config.checkpoint_every=2",
)  # fmt: skip


def _train(workdir, data_dir, *overrides):
    argv = ["train", "--config", "digits_standard", "--workdir", str(workdir)]
    return cli.main([*argv, f"--config.data_dir={data_dir}", *TINY, *overrides])


def _events(path):
    """The ``Event`` records of one event file (TFRecord framing: length, its CRC, data, CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    out, data = [], open(path, "rb").read()
    i = 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        out.append(Event.FromString(data[i + 12 : i + 12 + n]))
        i += 12 + n + 4
    return out


def _scalars(logdir):
    """``{(tag, step): value}`` as TensorBoard shows it: files in name order, and a session
    START at step ``s`` hides the events read before with step ``>= s``."""
    seen: dict[tuple[str, int], float] = {}
    for name in sorted(os.listdir(logdir)):
        for e in _events(os.path.join(logdir, name)):
            if e.HasField("session_log") and e.session_log.status == e.session_log.START:
                seen = {k: v for k, v in seen.items() if k[1] < e.step}
            for v in e.summary.value:
                seen[(v.tag, e.step)] = v.simple_value
    return seen


def _jsonl(workdir):
    out = {}
    for line in open(os.path.join(workdir, "metrics.jsonl")):
        record = json.loads(line)
        step = record.pop("step")
        out.update({(k, step): v for k, v in record.items()})
    return out


def test_tensorboard_scalars_equal_metrics_jsonl_through_a_resume(tmp_path, data_dir):
    pytest.importorskip("tensorboardX")
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.tensorboard=True") == 0
    logdir = w / "tensorboard"
    first = _jsonl(w)
    assert {k for k, _ in first} >= {"train/loss", "eval/accuracy", "steps_per_sec"}
    tb = _scalars(logdir)
    assert set(tb) == set(first)
    for key, value in first.items():  # TensorBoard keeps float32 (simple_value)
        assert tb[key] == np.float32(value), key

    # Resume from step 2: metrics.jsonl drops steps > 2 and logs step 3 again; a new event
    # file purges the old step 3 in TensorBoard's reading. The lock is taken as before.
    shutil.rmtree(w / "checkpoints" / "3")
    assert _train(w, data_dir, "--config.tensorboard=True") == 0
    files = sorted(os.listdir(logdir))
    assert len(files) == 2
    starts = [e.step for e in _events(logdir / files[1]) if e.HasField("session_log")]
    assert starts == [3]  # the purge marker: steps >= 3 of the first file are hidden
    second = _jsonl(w)
    assert second[("train/loss", 3)] == first[("train/loss", 3)]  # the same step, recomputed
    assert second[("steps_per_sec", 3)] != first[("steps_per_sec", 3)]
    tb = _scalars(logdir)
    assert set(tb) == set(second)
    for key, value in second.items():
        assert tb[key] == np.float32(value), key

    # Off again on a later resume: allowed (a logging field), and no new event file.
    assert _train(w, data_dir, "--config.num_steps=4") == 0
    assert len(os.listdir(logdir)) == 2


def test_without_tensorboardx_the_key_is_a_one_line_error(tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.tensorboard=True") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("jaxinterp: error: config.tensorboard=True needs tensorboardX"), line
    assert "pip install 'jaxinterp[tensorboard]'" in line
    assert not w.exists()  # refused before anything is written
