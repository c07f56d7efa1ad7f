"""`jaxinterp explain` writes a readable PNG grid for a trained model."""

import os

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


def test_explain_writes_a_png_with_the_default_methods(workdir, tmp_path, capsys):
    # How long it takes is measured by the benchmarks, not asserted here.
    import matplotlib.image

    out = str(tmp_path / "grid.png")
    status = cli.main(["explain", "--workdir", workdir, "--out", out, "--num-examples", "4"])
    assert status == 0, capsys.readouterr().err
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


def test_signed_heatmap_keeps_the_sign_and_scales_per_example():
    a = np.zeros((2, 2, 2, 3))
    a[0, 0, 0] = (1.0, 1.0, 0.0)  # Σ_c = 2
    a[0, 1, 1] = (-4.0, 0.0, 0.0)  # Σ_c = -4: the peak magnitude
    a[1, 0, 1] = (0.0, 0.0, 0.25)
    h = explain_job.signed_heatmap(a)
    assert h.shape == (2, 2, 2)
    np.testing.assert_allclose(h[0], [[0.5, 0.0], [0.0, -1.0]])
    np.testing.assert_allclose(h[1], [[0.0, 1.0], [0.0, 0.0]])
    assert (explain_job.signed_heatmap(np.zeros((1, 2, 2, 1))) == 0).all()


def test_cli_modes_are_the_jobs_modes():
    parser = cli._parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    mode = next(a for a in sub.choices["explain"]._actions if a.dest == "mode")
    assert tuple(mode.choices) == explain_job.MODES


def test_signed_and_overlay_modes_draw_what_they_say(workdir, tmp_path, capsys):
    import matplotlib.image

    pngs = {}
    for mode in ("abs", "signed", "overlay"):
        out = str(tmp_path / f"{mode}.png")
        argv = ["explain", "--workdir", workdir, "--out", out, "--num-examples", "2"]
        assert cli.main([*argv, "--methods", "gradient", "--mode", mode]) == 0
        assert "explain: gradient done in" in capsys.readouterr().err  # a line per method
        pngs[mode] = matplotlib.image.imread(out)[..., :3]
    r, b = pngs["signed"][..., 0], pngs["signed"][..., 2]
    # The gradient has both signs: the diverging scale shows red and blue pixels.
    assert ((r - b) > 0.3).sum() > 20 and ((b - r) > 0.3).sum() > 20
    assert not ((pngs["abs"][..., 2] - pngs["abs"][..., 0]) > 0.3).any()  # inferno has no blue

    def grey(png):  # mid-grey pixels: the input, and where the overlay lets it show through
        spread = png.max(axis=-1) - png.min(axis=-1)
        return int(((spread < 0.02) & (png[..., 0] > 0.15) & (png[..., 0] < 0.85)).sum())

    assert grey(pngs["overlay"]) > grey(pngs["abs"]) + 100
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage + one line, status 2
        cli.main([*argv, "--mode", "loud"])
    assert exit_info.value.code == 2 and "invalid choice: 'loud'" in capsys.readouterr().err


def test_attribution_fn_is_shared_and_applies_overrides():
    import jax
    import jax.numpy as jnp

    def apply_fn(params, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ params)

    params = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 2, 2, 2))
    y, key = jnp.array([0, 2]), jax.random.PRNGKey(2)
    # One compiled function per (model function, method, hyperparameters), however asked for.
    fn = explain_job.attribution_fn(apply_fn, "ig")
    assert fn is explain_job.attribution_fn(apply_fn, "ig", None)
    two = explain_job.attribution_fn(apply_fn, "ig", None, num_steps=2)
    assert two is not fn and two is explain_job.attribution_fn(apply_fn, "ig", num_steps=2)
    # The override reaches the explainer: 2 steps of IG differ from the default's.
    a_default, a_two = fn(params, x, y, key), two(params, x, y, key)
    assert a_default.shape == a_two.shape == x.shape
    assert not np.allclose(a_default, a_two, rtol=1e-3, atol=1e-6)


def test_compute_attributions_applies_per_method_overrides():
    import jax
    import jax.numpy as jnp

    def apply_fn(params, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ params)

    params = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (2, 2, 2, 2)))
    y = np.array([0, 2], np.int32)
    got = explain_job.compute_attributions(
        apply_fn, params, x, y, ["gradient", "ig"], overrides={"ig": {"num_steps": 2}}
    )
    key = jax.random.fold_in(jax.random.PRNGKey(0), 1)  # the key of the second method
    want = explain_job.attribution_fn(apply_fn, "ig", None, num_steps=2)(params, x, y, key)
    np.testing.assert_array_equal(got["ig"], want)
    default = explain_job.attribution_fn(apply_fn, "ig")(params, x, y, key)
    assert not np.allclose(got["ig"], default, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="not asked for"):
        explain_job.compute_attributions(
            apply_fn, params, x, y, ["gradient"], overrides={"relex": {"num_samples": 2}}
        )
