"""Reliability of `jaxinterp train`: only finite state is saved, atomic files, fallback to
the last good checkpoint, one writer per workdir, honest resume."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
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


def _fail_check(monkeypatch, at_call):
    """Makes the finite-state check fail from its ``at_call``-th call on."""
    real, calls = training.all_finite, []

    def check(tree):
        calls.append(1)
        return real(tree) and len(calls) < at_call

    monkeypatch.setattr(training, "all_finite", check)


def test_non_finite_state_keeps_the_last_good_checkpoint(tmp_path, data_dir, capsys, monkeypatch):
    _fail_check(monkeypatch, at_call=3)
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


def test_rejected_config_writes_nothing_and_the_rerun_trains(tmp_path, data_dir, capsys):
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.num_steps=2", "--config.batch_size=99999999") == 2
    assert "is larger than the training set" in _error_line(capsys)
    assert not w.exists()
    assert _train(w, data_dir, "--config.num_steps=2") == 0
    assert _steps(w) == [2]


def _metrics(tmp_path, lines):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(lines))
    return str(path)


def test_metrics_resume_swaps_in_a_cleaned_copy(tmp_path, monkeypatch):
    lines = [json.dumps({"step": s, "train/loss": 1.0}) + "\n" for s in (1, 2, 3, 4)]
    path = _metrics(tmp_path, [*lines, '{"step": 5, "tr'])
    before = os.stat(path).st_ino
    training.MetricsWriter(path, resume_step=4)  # only the cut line goes
    assert open(path).read() == "".join(lines) and os.stat(path).st_ino != before
    before = os.stat(path).st_ino
    training.MetricsWriter(path, resume_step=4)  # nothing to drop: the file is untouched
    assert os.stat(path).st_ino == before

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        training.MetricsWriter(path, resume_step=2)
    assert open(path).read() == "".join(lines)  # a kill mid-resume leaves the file whole
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # and no temporary file
    monkeypatch.undo()
    w = training.MetricsWriter(path, resume_step=2)
    w.write(3, {"train/loss": 0.5})
    assert [json.loads(x)["step"] for x in open(path)] == [1, 2, 3]


def test_json_is_written_atomically(tmp_path, monkeypatch):
    path = str(tmp_path / "config.json")
    training.write_json_atomic(path, {"a": 1})
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        training.write_json_atomic(path, {"a": 2})
    assert json.load(open(path)) == {"a": 1} and os.listdir(tmp_path) == ["config.json"]


def _truncate_data(step_dir):
    for root, _, files in os.walk(step_dir):
        if os.path.basename(root) == "d":  # the array data files
            for name in files:
                with open(os.path.join(root, name), "r+b") as f:
                    f.truncate(7)


def _remove(name):
    def corrupt(step_dir):
        for root, _, files in os.walk(step_dir):
            for f in files:
                if f == name:
                    os.remove(os.path.join(root, f))

    return corrupt


def _empty(step_dir):
    import shutil

    shutil.rmtree(step_dir)
    os.mkdir(step_dir)


def _saved_steps(directory, steps):
    ckpt = training.Checkpointer(str(directory), max_to_keep=5)
    for s in steps:
        ckpt.save(s, {"w": np.full((4, 3), float(s), np.float32), "b": np.arange(3.0) + s})
    return ckpt


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "corrupt", [_truncate_data, _remove("_METADATA"), _remove("manifest.ocdbt"), _empty]
)
def test_checkpointer_falls_back_past_an_unreadable_checkpoint(tmp_path, corrupt):
    _saved_steps(tmp_path, [1, 2, 3]).close()
    corrupt(os.path.join(tmp_path, "3"))
    ckpt, lines = training.Checkpointer(str(tmp_path)), []
    target = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3)}
    step, state = ckpt.restore_latest_good(target, report=lines.append)
    assert step == 2 and float(state["w"][0, 0]) == 2.0
    assert len(lines) == 1 and "checkpoint 3 in" in lines[0] and "moved to 3.corrupt" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "3.corrupt", "jaxinterp.json"]
    assert ckpt.latest_step() == 2
    ckpt.close()


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_resume_falls_back_past_a_truncated_checkpoint(tmp_path, data_dir, capsys):
    w = tmp_path / "run"
    args = ("--config.num_steps=3", "--config.checkpoint_every=1")
    assert _train(w, data_dir, *args) == 0
    _truncate_data(os.path.join(w, "checkpoints", "3"))
    capsys.readouterr()
    assert _train(w, data_dir, *args) == 0
    err = capsys.readouterr().err
    # One line for the bad checkpoint: no traceback of the failed read's threads around it.
    assert "Traceback" not in err and "never awaited" not in err, err
    warning = [x for x in err.splitlines() if "does not read back" in x]
    assert len(warning) == 1 and "moved to 3.corrupt, resuming from step 2" in warning[0], err
    assert "3.corrupt" in os.listdir(os.path.join(w, "checkpoints")) and _steps(w) == [1, 2, 3]


def test_writer_thread_errors_are_held_back_only_when_the_save_raises(monkeypatch):
    import logging

    from jaxinterp.training import checkpoint

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    records, logger = [], logging.getLogger("absl")
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    msg = "[thread=array_type_handler] _SignalingThread.run() raised an exception: OUT_OF_RANGE"
    try:
        with pytest.raises(ValueError, match="disk full"):
            with checkpoint._held_thread_errors():
                logger.error(msg)
                logger.error("another error")
                raise ValueError("disk full")
        assert [r.getMessage() for r in records] == ["another error"]
        with checkpoint._held_thread_errors():
            logger.error(msg)  # the save returned: nothing reports it, so it is passed on
        assert [r.getMessage() for r in records] == ["another error", msg]
        assert not logger.filters
    finally:
        logger.removeHandler(handler)


def test_the_noise_of_a_failed_read_is_dropped_and_nothing_else(monkeypatch):
    from jaxinterp.training import checkpoint

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    checkpoint._drop_orbax_noise()
    checkpoint._drop_orbax_noise()  # installed once
    hook = sys.unraisablehook
    assert hook is not seen.append

    class U:
        def __init__(self, exc, obj=None):
            self.exc_value, self.object = exc, obj

    def coroutine(filename):
        scope = {}
        exec(compile("async def read(): pass", filename, "exec"), scope)
        return scope["read"]()

    from_orbax, ours = coroutine("/site-packages/orbax/x.py"), coroutine("/jaxinterp/x.py")
    hook(U(RuntimeError("Event loop is closed")))
    hook(U(Exception("Encountered error while reading array index"), from_orbax))
    assert seen == []
    other = U(RuntimeError("something else"))
    hook(other)
    hook(U(ValueError("Event loop is closed")))
    hook(U(Exception("an error"), ours))
    assert len(seen) == 3 and seen[0] is other
    from_orbax.close(), ours.close()


def test_abandoned_orbax_tasks_are_not_logged_and_other_tasks_are():
    import logging

    from jaxinterp.training import checkpoint

    def failing(filename):
        scope = {}
        exec(compile("def read():\n    raise ValueError('bad')", filename, "exec"), scope)
        try:
            scope["read"]()
        except ValueError as e:
            return (ValueError, e, e.__traceback__)

    def record(exc_info):
        msg = "Task exception was never retrieved\nfuture: <Task finished>"
        return logging.LogRecord("asyncio", logging.ERROR, "x", 1, msg, None, exc_info)

    f = checkpoint._AbandonedOrbaxTasks()
    assert not f.filter(record(failing("/site-packages/orbax/serialization.py")))
    assert f.filter(record(failing("/jaxinterp/mine.py")))
    assert f.filter(logging.LogRecord("asyncio", logging.ERROR, "x", 1, "other", None, None))
    future = (
        "Future exception was never retrieved\nfuture: <Future finished exception=ValueError("
        '\'OUT_OF_RANGE: Error reading "w/0" in OCDBT database at local file "/c/6/"\')>'
    )
    assert not f.filter(logging.LogRecord("asyncio", logging.ERROR, "x", 1, future, None, None))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_readable_checkpoint_ends_with_one_line(tmp_path, data_dir, capsys):
    w = tmp_path / "run"
    args = ("--config.num_steps=2", "--config.checkpoint_every=1")
    assert _train(w, data_dir, *args) == 0
    for step in ("1", "2"):
        _truncate_data(os.path.join(w, "checkpoints", step))
    assert _train(w, data_dir, *args) == 2
    line = _error_line(capsys)
    assert f"no checkpoint in {w / 'checkpoints'} reads back (steps 2, 1" in line, line
    assert _steps(w) == [1, 2]  # left in place


def test_a_second_trainer_on_the_workdir_is_refused(tmp_path, data_dir, capsys):
    import fcntl

    w = tmp_path / "run"
    w.mkdir()
    with open(w / ".lock", "w") as held:  # another open file: flock conflicts as across processes
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("pid 4242 on host elsewhere\n")
        held.flush()
        assert _train(w, data_dir, "--config.num_steps=2") == 2
        line = _error_line(capsys)
        assert f"workdir {w} is in use by another trainer (pid 4242 on host elsewhere" in line
        assert sorted(os.listdir(w)) == [".lock"]  # nothing written
    # A holder killed with SIGKILL leaves the file but no lock: the next trainer takes over.
    lock = str(w / ".lock")
    code = (
        f"import fcntl, os; f = open({lock!r}, 'w'); fcntl.flock(f.fileno(), fcntl.LOCK_EX); "
        "f.write(f'pid {os.getpid()} on host dead'); f.flush(); os.kill(os.getpid(), 9)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert "on host dead" in (w / ".lock").read_text()
    assert _train(w, data_dir, "--config.num_steps=2") == 0
    assert (w / ".lock").read_text().startswith(f"pid {os.getpid()} on host ")


def _files(w):
    out = {}
    for root, _, files in os.walk(w):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, w)] = (os.stat(p).st_mtime_ns, open(p, "rb").read())
    return out


def test_resume_with_fewer_steps_than_reached_changes_nothing(tmp_path, data_dir, capsys):
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.num_steps=3", "--config.checkpoint_every=3") == 0
    before = _files(w)
    capsys.readouterr()
    assert _train(w, data_dir, "--config.num_steps=2") == 0
    assert "already reached step 3, past --config.num_steps=2; nothing changed" in _error_line(
        capsys
    )
    after = _files(w)
    after.pop(".lock"), before.pop(".lock")
    assert after == before


def test_other_num_steps_reads_the_latest_checkpoint_before_trusting_it(tmp_path, data_dir, capsys):
    # Checkpoint 4 (the end of the run) does not read back: the run has reached step 2, not
    # 4, so asking for 3 steps must not say "already reached step 4" and change nothing.
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.num_steps=4", "--config.checkpoint_every=2") == 0
    _truncate_data(os.path.join(w, "checkpoints", "4"))
    before = _files(w)
    capsys.readouterr()
    assert _train(w, data_dir, "--config.num_steps=3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("checkpoint 4 in" in e and "left in place" in e for e in err), err
    assert "holds an unfinished run of num_steps=4 (at step 2)" in err[-1], err
    after = _files(w)
    after.pop(".lock"), before.pop(".lock")
    assert after == before


def test_resume_with_other_num_steps_past_a_damaged_checkpoint_reports_it_once(
    tmp_path, data_dir, capsys
):
    # A constant schedule may change num_steps mid-run. Checkpoint 4 does not read back: the
    # read-only check finds step 2, the resume moves 4 aside, and says so in one line.
    w = tmp_path / "run"
    args = ("--config.schedule=constant", "--config.checkpoint_every=2")
    assert _train(w, data_dir, "--config.num_steps=4", *args) == 0
    _truncate_data(os.path.join(w, "checkpoints", "4"))
    capsys.readouterr()
    assert _train(w, data_dir, "--config.num_steps=6", *args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    about = [e for e in err if "checkpoint 4 in" in e]
    assert len(about) == 1 and "moved to 4.corrupt, resuming from step 2" in about[0], err
    assert _steps(w)[-1] == 6 and os.path.isdir(w / "checkpoints" / "4.corrupt")


def test_extending_a_finished_run_reads_its_checkpoint_once(
    tmp_path, data_dir, capsys, monkeypatch
):
    w = tmp_path / "run"
    assert _train(w, data_dir, "--config.num_steps=2", "--config.checkpoint_every=1") == 0
    reads, real = [], training.Checkpointer.restore

    def restore(self, target, step=None):
        reads.append(step)
        return real(self, target, step)

    monkeypatch.setattr(training.Checkpointer, "restore", restore)
    capsys.readouterr()
    assert _train(w, data_dir, "--config.num_steps=3", "--config.checkpoint_every=1") == 0
    err = capsys.readouterr().err
    assert err.count("extending the finished 2-step run") == 1, err
    assert reads == [2] and _steps(w)[-1] == 3  # the verified read is the one resumed from


def test_resume_of_an_unfinished_run_with_other_num_steps_is_refused(
    tmp_path, data_dir, capsys, monkeypatch
):
    w = tmp_path / "run"
    args = ("--config.num_steps=4", "--config.checkpoint_every=1")
    _fail_check(monkeypatch, at_call=3)
    assert _train(w, data_dir, *args) == 1  # interrupted after the checkpoint of step 2
    monkeypatch.undo()
    assert _train(w, data_dir, "--config.num_steps=6", "--config.checkpoint_every=1") == 2
    line = _error_line(capsys)
    assert "holds an unfinished run of num_steps=4 (at step 2)" in line, line
    assert "--config.num_steps=4" in line
    assert json.load(open(w / "config.json"))["num_steps"] == 4
    assert _train(w, data_dir, *args) == 0 and _steps(w)[-1] == 4


def test_checkpoint_with_wrong_checksums_is_moved_aside(tmp_path):
    _saved_steps(tmp_path, [1, 2]).close()
    sums_path = tmp_path / "2" / "jaxinterp_sums.json"
    sums = json.loads(sums_path.read_text())
    key = next(k for k in sums if "w" in k)
    sums[key][0] += 1.0  # as if one value had changed on disk
    sums_path.write_text(json.dumps(sums))
    ckpt, lines = training.Checkpointer(str(tmp_path)), []
    target = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3)}
    step, state = ckpt.restore_latest_good(target, report=lines.append)
    assert step == 1 and float(state["w"][0, 0]) == 1.0
    assert len(lines) == 1 and "do not match their saved checksums" in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["1", "2.corrupt", "jaxinterp.json"]
    ckpt.close()


def test_a_changed_value_under_the_old_checksums_is_detected(tmp_path):
    # Values of the size of Adam's second moments: the change moves the sums by < 1e-8.
    target = {"w": np.zeros((64, 16), np.float32)}
    w = np.full((64, 16), 1e-9, np.float32)
    ckpt = training.Checkpointer(str(tmp_path / "a"))
    ckpt.save(1, {"w": w})
    ckpt.save(2, {"w": w})
    ckpt.close()
    sums = (tmp_path / "a" / "2" / "jaxinterp_sums.json").read_text()
    w[0, 0] = 5e-9
    ckpt = training.Checkpointer(str(tmp_path / "b"))
    ckpt.save(2, {"w": w})
    ckpt.close()
    shutil.rmtree(tmp_path / "a" / "2")
    os.replace(tmp_path / "b" / "2", tmp_path / "a" / "2")
    (tmp_path / "a" / "2" / "jaxinterp_sums.json").write_text(sums)
    ckpt = training.Checkpointer(str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"checkpoint 2: \['w'\] do not match"):
        ckpt.restore(target, 2)
    lines = []
    step, state = ckpt.restore_latest_good(target, report=lines.append)
    assert step == 1 and float(state["w"][0, 0]) == np.float32(1e-9) and len(lines) == 1
    ckpt.close()


def test_checksum_files_of_older_versions_are_still_compared(tmp_path):
    target = {"w": np.zeros((64, 16), np.float32)}
    w = np.full((64, 16), 1e-9, np.float32)
    ckpt = training.Checkpointer(str(tmp_path))
    ckpt.save(1, {"w": w})
    path = tmp_path / "1" / "jaxinterp_sums.json"

    def old_sums(v):  # the two float64 sums that older versions wrote
        a = v.astype(np.float64).ravel()
        return {"['w']": [float(a.sum()), float(a @ (np.arange(1, a.size + 1) / a.size))]}

    path.write_text(json.dumps(old_sums(w)))
    assert float(ckpt.restore(target, 1)["w"][0, 0]) == np.float32(1e-9)
    changed = w.copy()
    changed[0, 0] = 5e-9
    path.write_text(json.dumps(old_sums(changed)))
    with pytest.raises(ValueError, match="do not match their saved checksums"):
        ckpt.restore(target, 1)
    path.write_text("{\"['w']\": [0.0")
    with pytest.raises(ValueError, match="checkpoint 1: jaxinterp_sums.json is unreadable"):
        ckpt.restore(target, 1)
    ckpt.close()


def test_a_deleted_checksum_file_is_not_read_unverified(tmp_path):
    _saved_steps(tmp_path, [1, 2]).close()
    os.remove(tmp_path / "2" / "jaxinterp_sums.json")
    ckpt, lines = training.Checkpointer(str(tmp_path)), []
    target = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3)}
    step, _ = ckpt.restore_latest_good(target, report=lines.append)
    assert step == 1 and len(lines) == 1 and "jaxinterp_sums.json is missing" in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["1", "2.corrupt", "jaxinterp.json"]
    ckpt.close()


def test_a_save_killed_before_its_checksums_moved_in_still_verifies(tmp_path):
    # The checksums are written first: orbax's commit without the move leaves them pending.
    _saved_steps(tmp_path, [1, 2]).close()
    os.replace(tmp_path / "2" / "jaxinterp_sums.json", tmp_path / ".pending-2.json")
    ckpt = training.Checkpointer(str(tmp_path))
    target = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3)}
    assert float(ckpt.restore(target, 2)["w"][0, 0]) == 2.0
    (tmp_path / ".pending-7.json").write_text("{}")  # a save killed before orbax committed
    ckpt.save(3, {"w": np.full((4, 3), 3.0, np.float32), "b": np.zeros(3)})
    assert not [x for x in os.listdir(tmp_path) if x.startswith(".pending")]
    assert (tmp_path / "2" / "jaxinterp_sums.json").exists()
    ckpt.close()


def test_checkpoints_of_versions_without_checksums_are_read(tmp_path):
    _saved_steps(tmp_path, [1, 2]).close()
    for step in ("1", "2"):
        os.remove(tmp_path / step / "jaxinterp_sums.json")
    os.remove(tmp_path / "jaxinterp.json")
    ckpt = training.Checkpointer(str(tmp_path))
    target = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3)}
    assert float(ckpt.restore(target)["w"][0, 0]) == 2.0
    ckpt.save(3, {"w": np.full((4, 3), 3.0, np.float32), "b": np.zeros(3)})
    assert float(ckpt.restore(target, 1)["w"][0, 0]) == 1.0  # older than the marker's step 3
    os.remove(tmp_path / "3" / "jaxinterp_sums.json")
    with pytest.raises(ValueError, match="checkpoint 3: jaxinterp_sums.json is missing"):
        ckpt.restore(target, 3)
    ckpt.close()


RUN6 = ("--config.num_steps=6", "--config.checkpoint_every=2")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    """A finished 6-step run with checkpoints 2, 4 and 6 (copy it before damaging it)."""
    w = tmp_path_factory.mktemp("finished") / "run"
    assert _train(w, data_dir, *RUN6) == 0
    return w


def _copy(finished, tmp_path):
    w = tmp_path / "run"
    shutil.copytree(finished, w)
    return w


def _remove_dir(name):
    def corrupt(step_dir):
        shutil.rmtree(os.path.join(step_dir, name))

    return corrupt


def _truncate_sums(step_dir):
    with open(os.path.join(step_dir, "jaxinterp_sums.json"), "r+b") as f:
        f.truncate(40)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "corrupt",
    [_truncate_data, _remove("_METADATA"), _empty, _remove_dir("default"), _truncate_sums],
)
def test_load_trained_falls_back_without_changing_the_workdir(finished, tmp_path, corrupt):
    from jaxinterp.experiments import load_trained

    w = _copy(finished, tmp_path)
    corrupt(os.path.join(w, "checkpoints", "6"))
    before, lines = _files(w), []
    trained = load_trained(str(w), report=lines.append)
    assert trained.step == 4
    assert len(lines) == 1, lines
    assert f"checkpoint 6 in {w / 'checkpoints'} does not read back (" in lines[0]
    assert lines[0].endswith("left in place (a read-only job), using step 4")
    if corrupt is _truncate_sums:
        assert "jaxinterp_sums.json is unreadable" in lines[0]
    assert _files(w) == before  # nothing moved aside or written


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_explain_falls_back_past_a_bad_checkpoint_and_refuses_when_none_reads(
    finished, tmp_path, capsys
):
    w = _copy(finished, tmp_path)
    data = os.path.join(w, "checkpoints", "6", "default", "ocdbt.process_0", "d")
    largest = max((os.path.join(data, f) for f in os.listdir(data)), key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)
    argv = ["explain", "--workdir", str(w), "--methods", "gradient", "--num-examples", "2"]
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(tmp_path / "m.png")]) == 0
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("jaxinterp:")]
    assert len(err) == 1 and "checkpoint 6 in" in err[0] and "using step 4" in err[0], err
    assert _steps(w) == [2, 4, 6]  # left in place
    for step in ("2", "4"):
        _truncate_data(os.path.join(w, "checkpoints", step))
    assert cli.main([*argv, "--out", str(tmp_path / "n.png")]) == 2
    line = _error_line(capsys)
    assert f"no checkpoint in {w / 'checkpoints'} reads back (steps 6, 4, 2" in line, line


def test_no_readable_checkpoint_prints_one_line_in_a_fresh_process(finished, tmp_path, data_dir):
    # In a process of its own, the failed reads' tensorstore threads and abandoned orbax
    # coroutines would print their tracebacks to stderr (in-process, pytest collects them).
    from tests import _subprocess

    w = _copy(finished, tmp_path)
    for step in ("2", "4", "6"):
        data = os.path.join(w, "checkpoints", step, "default", "ocdbt.process_0", "d")
        largest = max((os.path.join(data, f) for f in os.listdir(data)), key=os.path.getsize)
        with open(largest, "r+b") as f:
            f.truncate(os.path.getsize(largest) // 2)
    cmd = _subprocess.train_command(str(w), data_dir, *TINY, *RUN6)
    proc = subprocess.run(
        cmd, env=_subprocess.child_env(1), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "reads back (steps 6, 4, 2" in lines[0], proc.stderr[-3000:]


@pytest.mark.parametrize("damage", [b'{"dataset": "dig', b"\x00garbage", b"\xff\xfe{}", b"[1]"])
def test_a_corrupt_config_json_is_named(finished, tmp_path, data_dir, capsys, damage):
    w = _copy(finished, tmp_path)
    (w / "config.json").write_bytes(damage)
    capsys.readouterr()
    assert _train(w, data_dir, *RUN6) == 2
    line = _error_line(capsys)
    assert line.startswith(f"jaxinterp: error: {w / 'config.json'} is ") and "corrupt" in line
    assert "use a new --workdir" in line, line
    out = str(tmp_path / "m.png")
    assert cli.main(["explain", "--workdir", str(w), "--methods", "gradient", "--out", out]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"jaxinterp: error: {w / 'config.json'} is ") and "corrupt" in line


def test_rerunning_a_finished_run_changes_nothing(finished, tmp_path, data_dir, capsys):
    w = _copy(finished, tmp_path)
    before = _files(w)
    capsys.readouterr()
    assert _train(w, data_dir, *RUN6) == 0
    assert f"workdir {w} already finished its 6 steps; nothing changed" in _error_line(capsys)
    after = _files(w)
    after.pop(".lock", None), before.pop(".lock", None)
    assert after == before
    steps = [json.loads(x)["step"] for x in open(w / "metrics.jsonl") if "eval/" in x]
    assert steps == [6]


def test_a_run_killed_during_its_final_eval_writes_it_on_rerun(finished, tmp_path, data_dir):
    w = _copy(finished, tmp_path)
    lines = (w / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert "eval/" in lines[-1]
    (w / "metrics.jsonl").write_text("".join(lines[:-1]))
    assert _train(w, data_dir, *RUN6) == 0
    assert (w / "metrics.jsonl").read_text().splitlines(keepends=True)[:-1] == lines[:-1]
    assert "eval/" in (w / "metrics.jsonl").read_text().splitlines()[-1]
