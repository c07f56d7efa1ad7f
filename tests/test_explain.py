"""`jaxinterp explain` writes a readable PNG grid for a trained model, within a minute."""

import os
import time

import numpy as np
import pytest

from jaxinterp import cli
from jaxinterp.experiments import explain as explain_job

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "digits_standard.py")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("explain") / "standard")
    argv = [
        "train",
        "--config",
        CONFIG,
        "--workdir",
        workdir,
        f"--config.data_dir={data_dir}",
        "--config.num_steps=150",
        "--config.num_devices=1",
    ]
    assert cli.main(argv) == 0
    return workdir


def test_explain_writes_a_png_in_under_a_minute(workdir, tmp_path, capsys):
    import matplotlib.image

    out = str(tmp_path / "grid.png")
    t0 = time.perf_counter()
    status = cli.main(["explain", "--workdir", workdir, "--out", out, "--num-examples", "4"])
    seconds = time.perf_counter() - t0
    assert status == 0, capsys.readouterr().err
    assert seconds < 60, f"explain took {seconds:.0f} s"
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 200 and image.shape[1] > 600  # 4 rows, 6 columns and a colour bar
    assert image[..., :3].std() > 0.05  # not blank
    assert "wrote" in capsys.readouterr().out


def test_heatmap_is_scaled_per_example():
    a = np.zeros((2, 3, 3, 2))
    a[0, 1, 1, 0], a[0, 0, 0, 1], a[1, 2, 2, 1] = -4.0, 2.0, 0.5
    h = explain_job.heatmap(a)
    assert h.shape == (2, 3, 3) and h[0, 1, 1] == 1.0 and h[0, 0, 0] == 0.5 and h[1, 2, 2] == 1.0


def test_explain_bad_input_is_one_line(workdir, tmp_path, capsys):
    assert (
        cli.main(
            [
                "explain",
                "--workdir",
                workdir,
                "--out",
                str(tmp_path / "a.png"),
                "--methods",
                "gradient,lime",
            ]
        )
        == 2
    )
    assert "unknown explainer(s) lime" in capsys.readouterr().err
    assert cli.main(["explain", "--workdir", workdir, "--out", str(tmp_path / "a.jpg")]) == 2
    assert "--out must be a .png file" in capsys.readouterr().err
    assert cli.main(["explain", "--workdir", str(tmp_path), "--out", str(tmp_path / "a.png")]) == 2
    assert "holds no config.json" in capsys.readouterr().err
