"""Reliability of `jaxinterp train`: only finite state is saved, atomic files, fallback to
the last good checkpoint, one writer per workdir, honest resume."""

import os

import pytest

from jaxinterp import cli, training

TINY = (
    "--config.model=mlp", "--config.model_kwargs={'hidden': (16,)}", "--config.batch_size=16",
    "--config.eval_batch_size=16", "--config.num_devices=1", "--config.log_every=1",
)  # fmt: skip


def _train(workdir, data_dir, *overrides):
    argv = ["train", "--config", "digits_standard", "--workdir", str(workdir)]
    return cli.main([*argv, f"--config.data_dir={data_dir}", *TINY, *overrides])


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def _steps(workdir):
    return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_non_finite_state_is_never_saved(tmp_path, data_dir, capsys):
    # 1e39 is a finite float64 but overflows float32: the first update turns the params into
    # inf while the step's metrics (computed before the update) are still finite.
    w = tmp_path / "run"
    status = _train(
        w, data_dir, "--config.num_steps=3", "--config.checkpoint_every=1",
        "--config.optimizer=sgd", "--config.weight_decay=1e39",
    )  # fmt: skip
    assert status == 1
    line = _error_line(capsys)
    assert "the update became non-finite at step 1" in line, line
    assert "no checkpoint was written" in line
    assert _steps(w) == []


def test_non_finite_state_keeps_the_last_good_checkpoint(tmp_path, data_dir, capsys, monkeypatch):
    real, calls = training.all_finite, []

    def fails_third(tree):
        calls.append(1)
        return real(tree) and len(calls) < 3

    monkeypatch.setattr(training, "all_finite", fails_third)
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.num_steps=3", "--config.checkpoint_every=1") == 1
    line = _error_line(capsys)
    assert "non-finite at step 3" in line and "last good checkpoint (step 2) is kept" in line
    assert _steps(w) == [1, 2]


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.weight_decay=1e999", "config.weight_decay must be a finite number"),
        ("--config.learning_rate=1e999", "config.learning_rate must be a finite number > 0"),
        ("--config.momentum=-1e999", "config.momentum must be a finite number"),
        ("--config.penalties={'input_grad': {'penalty': 'input_gradient_norm', 'weight': 1e999}}",
         "config.penalties.input_grad.weight must be a finite number"),
    ],
)  # fmt: skip
def test_non_finite_hyperparameters_are_refused(tmp_path, data_dir, capsys, override, message):
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.num_steps=3", override) == 2
    line = _error_line(capsys)
    assert line.startswith("jaxinterp: error: ") and message in line, line
