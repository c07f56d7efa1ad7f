"""Every digits penalty config trains through `jaxinterp train`; LGA and act-sens reach 90%."""

import json
import os

import pytest

from jaxinterp import cli, configs
from jaxinterp.experiments import config_io
from jaxinterp.experiments.penalties import build_penalty

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
NAMES = ["input_grad", "hessian", "lga", "act_sens", "cure", "pgd_at", "trades"]


def _train(tmp_path, data_dir, config, *overrides):
    workdir = str(tmp_path / os.path.basename(config))
    argv = ["train", "--config", config, "--workdir", workdir, f"--config.data_dir={data_dir}"]
    argv.append("--config.num_devices=1")  # 4 fake devices on 2 cores only slow it down
    return cli.main([*argv, *overrides])


@pytest.mark.parametrize("name", NAMES)
def test_digits_config_trains_a_few_steps(tmp_path, data_dir, capsys, name):
    config = os.path.join(CONFIGS, f"digits_{name}.py")
    status = _train(tmp_path, data_dir, config, "--config.num_steps=3", "--config.batch_size=32")
    assert status == 0, capsys.readouterr().err
    workdir = tmp_path / os.path.basename(config)
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    (penalty_name,) = config_io.load_config(config).penalties.keys()
    train = [r for r in records if "train/loss" in r][-1]
    assert train[f"train/{penalty_name}"] >= 0.0 and train["train/penalty"] >= 0.0


def test_all_configs_build_their_penalties():
    paths = [configs.path(n) for n in configs.names()]
    studies = [p for p in paths if os.path.basename(p).startswith("reproduce_")]
    # The `jaxinterp reproduce` studies are not training configs.
    assert {os.path.basename(p) for p in studies} == {
        f"reproduce_{d}.py" for d in ("mnist5k", "digits", "mnist", "cifar10")
    }
    for path in studies:
        assert config_io.load_config(path).seeds
    for path in sorted(set(paths) - set(studies)):
        config = config_io.load_config(path)
        penalty = build_penalty(config.penalties, context={"features_fn": lambda p, x: {}})
        assert (penalty is None) == (len(config.penalties) == 0), path


@pytest.mark.parametrize("name", ["lga", "act_sens"])
def test_regularized_digits_models_reach_90_percent(tmp_path, data_dir, capsys, name):
    config = os.path.join(CONFIGS, f"digits_{name}.py")
    assert _train(tmp_path, data_dir, config, "--config.num_steps=200") == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["eval/accuracy"] >= 0.90, result


def test_bad_penalty_config_is_one_line(tmp_path, data_dir, capsys):
    config = os.path.join(CONFIGS, "digits_lga.py")
    status = _train(tmp_path, data_dir, config, "--config.penalties.lga.epsilon=3.0")
    assert status == 2
    assert "epsilon must be a finite number > 0 and <= 1" in capsys.readouterr().err
    status = _train(tmp_path, data_dir, config, "--config.penalties.lga.penalty=nope")
    assert status == 2
    assert "unknown penalty 'nope'" in capsys.readouterr().err
