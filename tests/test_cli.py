"""`jaxinterp train` end to end on the embedded data, and its one-line errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxinterp import cli, data
from jaxinterp.experiments import load_trained

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "digits_standard.py")


def _train(tmp_path, data_dir, *overrides, name="run"):
    workdir = str(tmp_path / name)
    argv = ["train", "--config", CONFIG, "--workdir", workdir, f"--config.data_dir={data_dir}"]
    return cli.main([*argv, *overrides]), workdir


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_train_writes_checkpoints_metrics_and_config(tmp_path, data_dir, capsys):
    status, workdir = _train(
        tmp_path, data_dir, "--config.num_steps=30", "--config.log_every=10",
        "--config.checkpoint_every=10", "--config.keep_checkpoints=2",
    )  # fmt: skip
    assert status == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 30 and 0.0 <= result["eval/accuracy"] <= 1.0
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    assert saved["num_steps"] == 30 and saved["dataset"] == "digits"
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records if "train/loss" in r] == [10, 20, 30]
    assert any("eval/accuracy" in r for r in records)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20", "30"]  # keep-2
    trained = load_trained(workdir)
    assert trained.step == 30
    x = data.load_split("digits", "test", data_dir=data_dir).images[:4]
    assert trained.model.apply_fn(trained.params, x).shape == (4, 10)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--config.num_stepz=3"], "unknown config field --config.num_stepz; did you mean"),
        (["--config.num_steps=abc"], "--config.num_steps expects int, got 'abc'"),
        (["--config.dataset=nosuchset"], "Unknown dataset name='nosuchset'"),
        (["--config.model=transformer"], "Unknown model 'transformer'"),
        (["--config.activation=tanh"], "Unknown activation 'tanh'"),
        (["--config.batch_size=130"], "batch_size=130 must be divisible by the 4 devices"),
        (["--config.batch_size=4096"], "batch_size=4096 is larger than the training set"),
        (["--config.penalties.foo=1"], "unknown config field --config.penalties.foo"),
        (["--config.optimizer=adagradx"], "unknown optimizer 'adagradx'"),
        (["--config.num_steps=0"], "config.num_steps must be a positive integer"),
        (["--config.model_kwargs={'depth': 3}"], "unexpected keyword argument(s) depth"),
        (["--config.model_kwargs=3"], "--config.model_kwargs expects a dict literal"),
    ],
)
def test_bad_config_ends_with_one_line(tmp_path, data_dir, capsys, overrides, message):
    status, _ = _train(tmp_path, data_dir, "--config.num_steps=2", *overrides)
    assert status == 2
    line = _error_line(capsys)
    assert line.startswith("jaxinterp: error: ") and message in line, line


def test_wrong_model_output_shape_is_reported(tmp_path, data_dir, capsys, monkeypatch):
    from jaxinterp.experiments import setup

    real = setup.model_from_config
    monkeypatch.setattr(
        "jaxinterp.experiments.train.model_from_config", lambda c, k: real(c, k + 1)
    )
    status, _ = _train(tmp_path, data_dir, "--config.num_steps=2")
    assert status == 2
    assert "maps input (1, 8, 8, 1) to (1, 11), expected (1, 10)" in _error_line(capsys)


def test_missing_config_file_and_registry_dataset(tmp_path, data_dir, capsys):
    assert cli.main(["train", "--config", "nope.py", "--workdir", str(tmp_path)]) == 2
    assert "config file not found: nope.py" in _error_line(capsys)
    status, _ = _train(tmp_path, str(tmp_path / "empty"), "--config.dataset=mnist")
    assert status == 2
    assert "jaxinterp prepare --dataset mnist" in _error_line(capsys)


def test_resume_with_a_different_config_is_refused(tmp_path, data_dir, capsys):
    assert _train(tmp_path, data_dir, "--config.num_steps=2")[0] == 0
    status, _ = _train(tmp_path, data_dir, "--config.num_steps=2", "--config.learning_rate=0.5")
    assert status == 2
    assert "holds a run with another config (learning_rate: 0.001 -> 0.5)" in _error_line(capsys)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_dir, capsys, monkeypatch):
    status, workdir = _train(
        tmp_path, data_dir, "--config.num_steps=10", "--config.checkpoint_every=5"
    )
    assert status == 0
    good = jax.device_get(load_trained(workdir).params)

    real_load = data.load_split

    def poisoned(name, split="train", **kw):
        s = real_load(name, split, **kw)
        images = np.array(s.images)
        images[::7] = np.nan  # every batch now holds a NaN image
        return data.Split(s.name, s.split, images, s.labels, s.num_classes, s.extras)

    monkeypatch.setattr("jaxinterp.data.load_split", poisoned)
    capsys.readouterr()
    status, _ = _train(tmp_path, data_dir, "--config.num_steps=20", "--config.checkpoint_every=5")
    assert status == 1
    line = _error_line(capsys)
    assert "non-finite" in line and "at step 11" in line and "last good checkpoint" in line
    trained = load_trained(workdir)
    assert trained.step == 10
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(trained.params), good)


def test_configs_command_lists_the_packaged_configs_without_jax():
    from jaxinterp import configs

    code = (
        "import sys; from jaxinterp import cli; status = cli.main(['configs']); "
        "assert 'jax' not in sys.modules, 'imported JAX'; sys.exit(status)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=os.sep
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    names = configs.names()
    assert {"digits_standard", "digits_lga", "mnist_standard", "reproduce_digits"} <= set(names)
    for name, line in zip(names, lines, strict=False):
        assert line.split(None, 1) == [name, configs.summary(name)], line
    # The subprocess may import an installed copy, not this checkout: compare the tail only.
    assert len(lines) == len(names) + 1
    assert os.path.join("jaxinterp", "configs") in lines[-1], lines[-1]
    assert configs.summary("digits_standard").startswith("Standard training")


def test_config_names_resolve_from_any_directory(tmp_path, monkeypatch, capsys):
    from jaxinterp import configs
    from jaxinterp.experiments import config_io

    monkeypatch.chdir(tmp_path)
    packaged = configs.path("digits_standard")
    assert os.path.dirname(packaged) == os.path.join(os.path.dirname(cli.__file__), "configs")
    for spec in ("digits_standard", "digits_standard.py", "configs/digits_standard.py", CONFIG):
        assert configs.resolve(spec) == packaged, spec
    assert config_io.load_config("reproduce_digits").seeds
    # A file that exists wins over the packaged config of the same name.
    os.makedirs("configs")
    with open("configs/digits_standard.py", "w") as f:
        f.write(
            "from jaxinterp.experiments.defaults import base_config\n\n\n"
            "def get_config():\n    c = base_config()\n    c.num_steps = 7\n    return c\n"
        )
    assert config_io.load_config("configs/digits_standard.py").num_steps == 7
    assert config_io.load_config("digits_standard").num_steps == 500
    # Other directories are paths, not names; a near miss names the closest configs.
    for spec, hint in (("elsewhere/digits_lga.py", "digits_lga"), ("digits_standrd", "digits_")):
        assert cli.main(["train", "--config", spec, "--workdir", str(tmp_path / "w")]) == 2
        line = _error_line(capsys)
        assert f"config file not found: {spec}; did you mean {hint}" in line, line


def test_configs_are_a_package_that_pip_install_ships():
    import tomllib

    import setuptools

    root = os.path.join(os.path.dirname(__file__), "..")
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        find = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]
    assert "jaxinterp.configs" in setuptools.find_packages(root, include=find["include"])
