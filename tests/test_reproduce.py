"""`jaxinterp reproduce --quick` end to end at a reduced size (a small MLP, a few steps)."""

import json
import os
import re

import pytest

from jaxinterp import cli
from jaxinterp.experiments import lab, study

# A study file as a user would write one: the digits study, shrunk to run in about a minute.
STUDY = """
from jaxinterp.experiments.study import study_config


def get_config():
    s = study_config("digits")
    s.model = "mlp"
    s.model_kwargs.hidden = (32,)
    s.num_steps = 40
    s.localisation_num_steps = 40
    s.num_examples = 8
    s.localisation_num_examples = 8
    s.eval_batch_size = 8
    s.num_figure_examples = 2
    s.data_dir = {data_dir!r}
    return s
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("reproduce")
    config = root / "study.py"
    config.write_text(STUDY.format(data_dir=data_dir))
    out = root / "out"
    status = cli.main(["reproduce", "--quick", "--config", str(config), "--out", str(out)])
    assert status == 0
    return out


def test_report_lists_every_claim_with_a_status_and_numbers(report):
    text = (report / "report.md").read_text()
    for i in range(1, 6):
        assert f"## Claim {i}:" in text
    summary = json.loads((report / "results.json").read_text())
    assert [c["id"] for c in summary["claims"]] == [1, 2, 3, 4, 5]
    statuses = {"holds", "partly holds", "does not hold", "not measured"}
    for c in summary["claims"]:
        assert c["status"].split(" (")[0] in statuses
        assert c["checks"] and c["rows"]
        assert len(c["columns"]) == len(c["rows"][0])
        for check in c["checks"]:  # every check shows the numbers it compared
            assert re.search(r"\d\.\d|\(nan\)", check["check"]), check
    assert summary["quick"] and summary["study"]["seeds"] == [0]
    assert set(summary["accuracy"]) == {f"{m}_s0" for m in study.MODELS}


def test_figures_are_written(report):
    figures = sorted(os.listdir(report / "figures"))
    assert [f"claim{i}_metrics.png" for i in range(1, 6)] == [f for f in figures if "claim" in f]
    assert "attributions_standard.png" in figures
    assert "attributions_localisation_standard.png" in figures
    for f in figures:
        assert (report / "figures" / f).read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_reuses_the_trained_models(report, capsys):
    summary = json.loads((report / "results.json").read_text())
    config = report.parent / "study.py"
    status = cli.main(
        ["reproduce", "--quick", "--config", str(config), "--out", str(report), "--claims", "5"]
    )
    assert status == 0
    again = json.loads((report / "results.json").read_text())
    assert again["accuracy"] == summary["accuracy"]  # same checkpoints, not retrained
    assert [c["id"] for c in again["claims"]] == [5]
    assert "claim 5 (" in capsys.readouterr().out


def test_quick_shrinks_the_study():
    full = study.study_config("digits")
    q = study.quick(full)
    assert len(q.seeds) == 1 and q.num_steps < full.num_steps
    assert q.num_examples <= full.num_examples
    assert study.study_config("mnist").localisation_dataset == ""


def test_checks_are_strict_orderings_and_nan_is_not_measured():
    assert lab.order("m", [("a", 2.0), ("b", 1.0)], True)["holds"]
    assert not lab.order("m", [("a", 1.0), ("b", 1.0)], True)["holds"]
    assert lab.order("m", [("a", 1.0), ("b", 2.0), ("c", 3.0)], False)["holds"]
    nan = lab.order("m", [("a", float("nan")), ("b", 1.0)], True)
    assert not nan["holds"] and nan["measured"] is False
    assert lab.status([nan]) == "not measured"
    ok = lab.order("m", [("a", 2.0), ("b", 1.0)], True)
    bad = lab.order("m", [("a", 0.0), ("b", 1.0)], True)
    assert lab.status([ok]) == "holds" and lab.status([bad]) == "does not hold"
    assert lab.status([ok, bad]) == "partly holds"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--claims", "7"], "unknown claim(s) [7]"),
        (["--claims", "one"], "--claims must be comma-separated integers"),
        (["--config", "nosuch.py"], "nosuch.py"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    status = cli.main(["reproduce", "--out", str(tmp_path / "o"), *argv])
    assert status == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
