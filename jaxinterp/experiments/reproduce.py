"""The job behind ``jaxinterp reproduce``: train the study's models, measure the claims, report.

Models are trained into ``DIR/models/<experiment>_s<seed>`` (a rerun resumes or reuses them),
the claims of METHODS §5 are measured (:mod:`jaxinterp.experiments.claims`) and written to
``DIR/results.json``, ``DIR/report.md`` and ``DIR/figures/*.png``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxinterp import data, training
from jaxinterp.core import checks
from jaxinterp.experiments import claims as claims_lib
from jaxinterp.experiments import config_io, report, study
from jaxinterp.experiments import lab as lab_lib
from jaxinterp.experiments.claims_attribution import CLAIMS
from jaxinterp.experiments.metric_suite import Settings
from jaxinterp.experiments.restore import load_trained
from jaxinterp.experiments.train import train_and_evaluate

__all__ = ["reproduce"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _train(config: ml_collections.ConfigDict, workdir: str) -> lab_lib.Model:
    t0 = time.perf_counter()
    result = train_and_evaluate(config, workdir)
    trained = load_trained(workdir)
    acc = result["eval"]["accuracy"]
    _log(f"  {os.path.basename(workdir)}: accuracy {acc:.3f} ({time.perf_counter() - t0:.0f}s)")
    return lab_lib.Model(
        name=os.path.basename(workdir),
        seed=int(config.seed),
        apply_fn=trained.model.apply_fn,
        features_fn=trained.model.features_fn,
        layer_fn=trained.model.layer_fn,
        params=trained.params,
        accuracy=float(acc),
        config=trained.config,
    )


def _check(
    out: str, s: ml_collections.ConfigDict, only: Sequence[int] | None, source: str
) -> list[int]:
    """The claim ids to measure, once ``out``, the study and ``only`` are checked."""
    config_io.check_output_dir("out", out)
    study.check_study(s, source)
    if only is None:
        return list(CLAIMS)
    ids = list(checks.sequence("claims", only, of=lambda n, v: checks.integer(n, v, None)))
    unknown = [i for i in ids if i not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; known: {list(CLAIMS)}")
    return ids


def reproduce(
    out: str,
    *,
    config: ml_collections.ConfigDict | None = None,
    quick: bool = False,
    claims: Sequence[int] | None = None,
    source: str = "the study config",
) -> dict[str, Any]:
    """Trains the study's models, measures the claims and writes the report into ``out``.

    Args:
      out: Output directory.
      config: A :func:`~jaxinterp.experiments.study.study_config` (default: mnist5k).
      quick: Apply :func:`~jaxinterp.experiments.study.quick`.
      claims: Claim ids to measure (``None``: all five; an empty sequence is refused).
      source: Where ``config`` came from, for the messages (e.g. ``--config FILE``).

    Returns:
      What ``results.json`` holds.

    Raises:
      ValueError / TypeError / PermissionError: A bad ``out``, study or claim list
        (:func:`~jaxinterp.experiments.study.check_study`,
        :func:`~jaxinterp.experiments.config_io.check_output_dir`), before anything is
        trained or written.
    """
    s = config if config is not None else study.study_config("mnist5k")
    ids = _check(out, s, claims, source)
    s = study.quick(s) if quick else s
    t_start = time.perf_counter()
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    _log(f"training {len(study.MODELS)} models x {len(s.seeds)} seed(s) on {s.dataset}")
    trained = {}
    for name in study.MODELS:
        for seed in s.seeds:
            cfg = study.model_config(s, name, seed)
            trained[(name, int(seed))] = _train(cfg, os.path.join(out, "models", f"{name}_s{seed}"))
    localisation = {}
    loc_test = None
    if s.localisation_dataset and any(CLAIMS[i].localisation for i in ids):
        _log(f"training the localisation model on {s.localisation_dataset}")
        for seed in s.seeds:
            cfg = study.model_config(s, "standard", seed, localisation=True)
            path = os.path.join(out, "models", f"localisation_standard_s{seed}")
            localisation[int(seed)] = _train(cfg, path)
        loc_test = data.load_split(s.localisation_dataset, "test", data_dir=s.data_dir or None)
    lab = lab_lib.Lab(
        models=trained,
        test=data.load_split(s.dataset, "test", data_dir=s.data_dir or None),
        settings=Settings(**s.eval.to_dict()),
        seeds=[int(seed) for seed in s.seeds],
        num_examples=int(s.num_examples),
        batch_size=int(s.eval_batch_size),
        localisation=localisation,
        localisation_test=loc_test,
        localisation_num_examples=int(s.localisation_num_examples),
        gates=dict(s.gates.to_dict()),
        protocol=dict(s.protocol.to_dict()),
        log=_log,
    )
    results = []
    for i in ids:
        t0 = time.perf_counter()
        _log(f"claim {i}")
        r = claims_lib.run(CLAIMS[i], lab)
        r["seconds"] = time.perf_counter() - t0
        _log(f"claim {i}: {r['status']} ({r['seconds']:.0f}s)")
        results.append(r)
    figures = report.figures(lab, s, os.path.join(out, "figures"), results)
    summary = {
        "study": s.to_dict(),
        "quick": quick,
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "accuracy": {f"{n}_s{seed}": m.accuracy for (n, seed), m in trained.items()},
        "claims": results,
        "figures": figures,
        "seconds": time.perf_counter() - t_start,
    }
    training.write_json_atomic(os.path.join(out, "results.json"), summary, default=_jsonable)
    training.write_atomic(os.path.join(out, "report.md"), report.markdown(summary))
    _log(f"wrote {out}/report.md ({summary['seconds']:.0f}s)")
    return summary


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.ndarray, jnp.ndarray)):
        return np.asarray(v).tolist()
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v)}")
