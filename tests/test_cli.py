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
    assert sorted(s for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()) == [
        "20",
        "30",
    ]  # keep-2
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


def _only_line(capsys):
    """The one line on stderr (asserted to be the only one)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


BAD_CONFIG_FILES = [
    ("def get_config(:\n    pass\n", "SyntaxError: "),
    ("def get_config():\n    return undefined_name\n", "NameError: name 'undefined_name'"),
    ("X = 1 / 0\n", "ZeroDivisionError: division by zero"),
    ("import no_such_module_jaxinterp\n", "ModuleNotFoundError: No module named"),
]


@pytest.mark.parametrize("text, error", BAD_CONFIG_FILES)
def test_config_file_that_fails_to_load_is_one_line(tmp_path, capsys, text, error):
    config, workdir = tmp_path / "bad.py", tmp_path / "w"
    config.write_text(text)
    assert cli.main(["train", "--config", str(config), "--workdir", str(workdir)]) == 2
    line = _only_line(capsys)
    assert line.startswith(f"jaxinterp: error: config {config} failed to load: {error}"), line
    assert not workdir.exists()


def test_config_file_error_keeps_its_traceback_under_debug(tmp_path, monkeypatch):
    config = tmp_path / "bad.py"
    config.write_text(BAD_CONFIG_FILES[0][0])
    monkeypatch.setenv("JAXINTERP_DEBUG", "1")
    with pytest.raises(ValueError, match="failed to load") as info:
        cli.main(["train", "--config", str(config), "--workdir", str(tmp_path / "w")])
    assert isinstance(info.value.__cause__, SyntaxError)


@pytest.mark.parametrize(
    "override, message",
    [
        (f"--config.seed={2**63}", f"config.seed must be an integer >= 0 and <= {2**63 - 1}"),
        (f"--config.seed={2**64}", f"config.seed must be an integer >= 0 and <= {2**63 - 1}"),
        ("--config.seed=-1", "config.seed must be an integer >= 0"),
        ("--config.keep_checkpoints=0", "config.keep_checkpoints must be an integer >= 1, got 0"),
        ("--config.ce_weight=-1", "config.ce_weight must be a finite number >= 0, got -1.0"),
        ("--config.ce_weight=0", "config.ce_weight is 0 and no penalty in config.penalties"),
    ],
)
def test_bad_value_is_refused_before_the_workdir_is_written(
    tmp_path, data_dir, capsys, override, message
):
    status, workdir = _train(tmp_path, data_dir, "--config.num_steps=2", override)
    assert status == 2
    line = _only_line(capsys)
    assert line.startswith("jaxinterp: error: ") and message in line, line
    assert not os.path.exists(workdir)


def test_packaged_configs_pass_the_checks():
    from jaxinterp import configs
    from jaxinterp.experiments import config_io, defaults, study

    for name in configs.names():
        config = config_io.load_config(name)
        if name.startswith("reproduce_"):
            study.check_study(config, name)
            study.check_study(study.quick(config), name)
        else:
            defaults.check_config(config)


@pytest.mark.parametrize(
    "workdir, message",
    [
        ("afile", "--workdir {D}/afile is not a directory (a file of that name exists)"),
        ("afile/w", "--workdir {D}/afile/w is under {D}/afile, which is a file"),
    ],
)
def test_workdir_that_is_or_is_under_a_file_is_one_line(tmp_path, capsys, workdir, message):
    (tmp_path / "afile").write_text("x")
    argv = ["train", "--config", CONFIG, "--workdir", str(tmp_path / workdir)]
    assert cli.main(argv) == 2
    line = _only_line(capsys)
    assert message.format(D=tmp_path) in line, line
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions")
@pytest.mark.parametrize("workdir", ["ro", "ro/w"])
def test_read_only_workdir_is_one_line(tmp_path, capsys, workdir):
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        argv = ["train", "--config", CONFIG, "--workdir", str(tmp_path / workdir)]
        assert cli.main(argv) == 2
        assert "is not writable" in _only_line(capsys)
        assert os.listdir(tmp_path / "ro") == []
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_workdir_without_permission_is_one_line(tmp_path, capsys, monkeypatch):
    # Simulated, so that it also runs as root (which bypasses a 0o555 directory).
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: not str(p).startswith(str(tmp_path)) and real(p, mode)
    )
    argv = ["train", "--config", CONFIG, "--workdir", str(tmp_path / "ro" / "w")]
    assert cli.main(argv) == 2
    line = _only_line(capsys)
    assert f"--workdir {tmp_path}/ro/w is not writable (in {tmp_path})" in line, line
    assert os.listdir(tmp_path) == []


def test_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    def full(config, workdir):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(workdir, "x"))

    monkeypatch.setattr("jaxinterp.experiments.train.train_and_evaluate", full)
    assert cli.main(["train", "--config", CONFIG, "--workdir", str(tmp_path / "w")]) == 2
    assert "[Errno 28] No space left on device" in _only_line(capsys)


EMPTY_SEEDS = (
    "from jaxinterp.experiments.config_io import load_config\n\n\ndef get_config():\n"
    "    c = load_config('reproduce_digits')\n    c.seeds = ()\n    return c\n"
)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "{D}/afile"], "out {D}/afile is not a directory"),
        (["--out", "{D}/afile/o"], "out {D}/afile/o is under {D}/afile, which is a file"),
        (["--out", ""], "out must be a directory path, got ''"),
        (["--claims", ""], "claims must be a non-empty sequence"),
        (["--config", "digits_standard"], "--config digits_standard is not a study config"),
        (["--config", "{D}/study.py"], "study.seeds must be a non-empty sequence"),
        (["--config", "{D}/seed.py"], "study.seeds[0] must be an integer >= 0"),
    ],
)
def test_bad_reproduce_input_is_refused_before_training(
    tmp_path, capsys, monkeypatch, argv, message
):
    from jaxinterp.experiments import reproduce

    def no_training(*args):
        raise AssertionError("the study started training")

    monkeypatch.setattr(reproduce, "_train", no_training)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "study.py").write_text(EMPTY_SEEDS)
    (tmp_path / "seed.py").write_text(EMPTY_SEEDS.replace("seeds = ()", "seeds = (-1,)"))
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    argv = [a.format(D=tmp_path) for a in argv]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "o")]
    assert cli.main(["reproduce", "--quick", *out, *argv]) == 2
    line = _only_line(capsys)
    assert line.startswith("jaxinterp: error: ") and message.format(D=tmp_path) in line, line
    assert os.listdir(run) == [] and not (tmp_path / "o").exists()
