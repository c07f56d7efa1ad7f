"""Property-based fuzzing of the public API (hypothesis).

Shapes (``B`` 0..3, ``H``/``W`` 1..8, ``C`` 1..3, flat, maps, vectors, rank 5, channels
first), dtypes (float32, float64, int32, uint8, bool, complex64) and labels (valid, −1,
``K``, float, the wrong length) go through every explainer of ``attribution.EXPLAINERS``
(small settings), every attack of ``attacks.ATTACKS``, every penalty of
``regularizers.PENALTIES`` and every public function of ``metrics``, on a tiny MLP. The
property: a call either returns a finite result of the documented shape, or raises
``ValueError``/``TypeError`` whose message names an argument the fuzzer broke. A broken
argument must never give an answer, and an unbroken one must never be refused (outside the
function's documented domain, e.g. SSIM's window, where the message names what does not fit).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from jaxinterp import attacks, attribution, metrics, regularizers

# No example database, and hypothesis's own caches go to the temporary directory, not the
# checkout.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "jaxinterp-hypothesis"))

K = 4  # APGD-T needs K >= 4.
HIDDEN = 8


def _hidden(params, x):
    """Per-example statistics of all entries (any shape, any B), then a softplus layer."""
    f = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    stats = jnp.stack(
        [jnp.mean(f, axis=1), jnp.mean(f * f, axis=1), jnp.mean(jnp.sin(3.0 * f), axis=1)], axis=1
    )
    return jax.nn.softplus(stats @ params["w1"] + params["b1"][None])


def apply_fn(params, x):
    """A tiny MLP on pooled statistics: ``[B, ...] -> [B, K]`` for every input shape."""
    return _hidden(params, x) @ params["w2"] + params["b2"][None]


def features_fn(params, x):
    return {"hidden": _hidden(params, x)}


def layer_fn(params, x, offsets):
    """``apply_fn`` behind one layer ``"input"`` (the input itself, plus its offset)."""
    h = x + offsets.get("input", 0.0)
    return apply_fn(params, h), {"input": h}


def _params():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    return {
        "w1": 2.0 * jax.random.normal(k1, (3, HIDDEN)),
        "b1": 0.1 * jax.random.normal(k3, (HIDDEN,)),
        "w2": jax.random.normal(k2, (HIDDEN, K)),
        "b2": jnp.zeros(K),
    }


PARAMS = _params()
KEY = jax.random.key(1)

# ------------------------------------------------------------------------------ cases

LAYOUTS = ("nhwc", "nhwc", "nhwc", "nhwc", "flat", "map", "vector", "rank5", "nchw")
DTYPES = (
    "float32", "float32", "float32", "float32", "float64", "int32", "uint8", "bool", "complex64",
)  # fmt: skip
LABELS = ("valid", "valid", "valid", "valid", "-1", "K", "float", "length")
FLOATS = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class Case:
    b: int
    layout: str
    h: int
    w: int
    c: int
    dtype: str
    labels: str
    seed: int

    @property
    def shape(self) -> tuple[int, ...]:
        b, h, w, c = self.b, self.h, self.w, self.c
        return {
            "nhwc": (b, h, w, c),
            "flat": (b, h * w * c),
            "map": (b, h, w),
            "vector": (b,),
            "rank5": (b, h, w, c, 1),
            "nchw": (b, 1 if c == 1 else 3, max(h, 5), max(w, 5)),  # What PyTorch hands over.
        }[self.layout]

    @property
    def labels_bad(self) -> bool:
        return self.labels in ("float", "length") or (self.labels in ("-1", "K") and self.b > 0)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, a)``: the fuzzed array, labels, and a float attribution shaped like x."""
        rng = np.random.default_rng(self.seed)
        u = rng.uniform(0.05, 0.95, self.shape)
        x = {
            "float32": u.astype(np.float32),
            "float64": u,
            "int32": (u * 255).astype(np.int32),
            "uint8": (u * 255).astype(np.uint8),
            "bool": u > 0.5,
            "complex64": u.astype(np.complex64),
        }[self.dtype]
        y = rng.integers(0, K, self.b)
        if self.labels == "-1" and self.b:
            y[0] = -1
        elif self.labels == "K" and self.b:
            y[-1] = K
        elif self.labels == "float":
            y = y.astype(np.float32)
        elif self.labels == "length":
            y = rng.integers(0, K, self.b + 1)
        return x, y, rng.normal(size=self.shape).astype(np.float32)


CASES = st.builds(
    Case,
    b=st.sampled_from((1, 2, 3, 1, 2, 3, 0)),
    layout=st.sampled_from(LAYOUTS),
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    c=st.integers(1, 3),
    dtype=st.sampled_from(DTYPES),
    labels=st.sampled_from(LABELS),
    seed=st.integers(0, 2**16),
)
VALID = Case(b=2, layout="nhwc", h=7, w=8, c=1, dtype="float32", labels="valid", seed=0)


def fuzz(max_examples: int):
    """``@given`` a fuzzed case, deterministic, plus one valid case that must compute."""

    def wrap(test):
        test = given(case=CASES)(test)
        test = example(case=VALID)(test)
        return settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=not os.environ.get("JAXINTERP_FUZZ_RANDOM"),
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )(test)

    return wrap


# ------------------------------------------------------------------------------ specs


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one public function is called on a case, and what it documents.

    ``call(x, y, a)`` gets the fuzzed array ``x`` (a model input for ``role="input"``: float,
    channels last; the map itself for ``role="map"``: any real dtype, cast), the labels and
    a float attribution like ``x``; ``check(out, shape)`` asserts the documented shape.
    """

    call: Callable[[Any, Any, Any], Any]
    check: Callable[[Any, tuple[int, ...]], None]
    role: str = "input"
    ranks: tuple[int, ...] | None = None  # accepted ranks of x (None: any >= min_rank)
    min_rank: int = 1
    labels: bool = True
    x_names: tuple[str, ...] = ("x",)
    y_names: tuple[str, ...] = ("y",)
    domain: Callable[[tuple[int, ...]], bool] | None = None  # inside the ranks, may refuse
    domain_names: tuple[str, ...] = ()  # what a refusal outside the domain names
    empty_ok: bool = False
    finite: Callable[[Any], Any] = lambda out: out  # the part documented to be finite


def like_x(out, shape):
    out = out[0] if isinstance(out, tuple) else out  # an attack's NamedTuple: x_adv first
    assert out.shape == shape, (out.shape, shape)


def per_example(out, shape):
    for leaf in jax.tree.leaves(out):
        assert leaf.shape == shape[:1], (leaf.shape, shape)


def scalar_and_diagnostics(out, shape):
    value, diagnostics = out
    diagnostics = dict(diagnostics)
    logits = diagnostics.pop(regularizers.SHARED_LOGITS, None)  # [B, K] for the train step
    assert logits is None or (logits.ndim == 2 and logits.shape[0] == shape[0]), logits.shape
    assert jnp.shape(value) == () and all(jnp.shape(v) == () for v in diagnostics.values())


def shaped(fn):
    def check(out, shape):
        assert out.shape == fn(shape), (out.shape, fn(shape))

    return check


SEARCH = {
    "epsilons": (0.5,), "pgd_steps": 1, "cw_steps": 1, "cw_binary_search_steps": 1,
    "refine_steps": 1,
}  # fmt: skip
EXPLAINER_SETTINGS: dict[str, tuple[dict, dict]] = {  # name -> (build kwargs, Spec kwargs)
    "gradient": ({}, {}),
    "gradient_x_input": ({}, {}),
    "ig": ({"num_steps": 2}, {}),
    "smoothgrad": ({"num_samples": 2}, {}),
    "vargrad": ({"num_samples": 2}, {}),
    "bsm": (SEARCH, {"min_rank": 2}),
    "big": ({"num_steps": 2, **SEARCH}, {"min_rank": 2}),
    "relex": ({"num_iterations": 1, "num_samples": 1}, {"min_rank": 2}),
    "random": ({}, {"labels": False}),
    "occlusion": (
        {"window": 2, "chunk_size": None},
        {"ranks": (4,), "domain": lambda s: min(s[1:3]) >= 2, "domain_names": ("window",)},
    ),
    "rise": ({"num_masks": 2, "grid": 2, "chunk_size": None}, {"ranks": (4,)}),
    "regadv": ({"num_steps": 1}, {"ranks": (4,)}),
    "regadv_l2": ({"num_steps": 1}, {"ranks": (4,)}),
    "pgd_l2_perturbation": ({"num_steps": 1}, {"ranks": (4,)}),
    "pgd_perturbation": ({"num_steps": 1}, {"ranks": (4,)}),
    "grad_cam": ({"layer_fn": layer_fn}, {"ranks": (4,)}),
    "grad_cam_pp": ({"layer_fn": layer_fn}, {"ranks": (4,)}),
}
ATTACK_SETTINGS: dict[str, dict] = {
    "pgd": {"num_steps": 1},
    "fgsm": {},
    "cw_l2": {"num_steps": 1, "binary_search_steps": 1},
    "boundary_search": SEARCH,
    "apgd_ce": {"num_steps": 2},
    "apgd_t": {"num_steps": 2, "num_target_classes": 1},
}
PENALTY_SETTINGS: dict[str, tuple[dict, bool]] = {  # name -> (build kwargs, uses labels)
    "input_gradient_norm": ({}, True),
    "hessian_norm": ({}, True),
    "gradient_alignment": ({}, True),
    "activation_sensitivity": ({"features_fn": features_fn}, False),
    "curvature": ({}, True),
    "adversarial_training": ({"num_steps": 1}, True),
    "trades": ({"num_steps": 1}, False),  # TRADES uses no labels.
}


def _explainer_spec(name: str) -> Spec:
    build, kw = EXPLAINER_SETTINGS[name]
    explain = attribution.EXPLAINERS.build(name, **build)
    return Spec(
        lambda x, y, a: explain(apply_fn, PARAMS, x, y, key=KEY),
        like_x,
        y_names=("y", "target"),
        **kw,
    )


def _first(out):
    """``x_adv`` of an attack's result (a boundary search reports ``distance = inf`` where
    it found nothing, by design)."""
    return out[0] if isinstance(out, tuple) else out


def _attack_spec(name: str) -> Spec:
    attack = attacks.ATTACKS.build(name, **ATTACK_SETTINGS[name])
    return Spec(
        lambda x, y, a: attack(apply_fn, PARAMS, x, y, key=KEY), like_x, min_rank=2, finite=_first
    )


def _penalty_spec(name: str) -> Spec:
    build, labels = PENALTY_SETTINGS[name]
    penalty = regularizers.PENALTIES.build(name, **build)
    return Spec(
        lambda x, y, a: penalty(apply_fn, PARAMS, x, y, key=KEY),
        scalar_and_diagnostics,
        min_rank=2,
        labels=labels,
    )


def _prob(y):
    return attribution.class_score(apply_fn, PARAMS, y, kind="softmax")


def _explain(y):
    return lambda z: attribution.gradient(attribution.class_score(apply_fn, PARAMS, y), z)


def _boxes(b):
    return np.tile(np.array([[0.0, 0.0, 2.0, 3.0]], np.float32), (b, 1))


def _gradient_map(f, p, x, y):
    return attribution.gradient(attribution.class_score(f, p, y), x)


_TOPK = attacks.topk_attack(_gradient_map, epsilon=0.1, num_steps=1, k=1)
_IN = {"y_names": ("y", "target")}
_MAP = {"role": "map", "labels": False}
METRIC_SPECS: dict[str, Spec] = {
    "perturbation_curve": Spec(
        lambda x, y, a: metrics.perturbation_curve(_prob(y), x, a, num_steps=2),
        shaped(lambda s: (s[0], 3)),
        ranks=(2, 4),
        **_IN,
    ),
    "deletion_auc": Spec(
        lambda x, y, a: metrics.deletion_auc(_prob(y), x, a, num_steps=2),
        per_example,
        ranks=(2, 4),
        **_IN,
    ),
    "insertion_auc": Spec(  # Its default substrate, a blur, needs images.
        lambda x, y, a: metrics.insertion_auc(_prob(y), x, a, num_steps=2),
        per_example,
        ranks=(2, 4),
        domain=lambda s: len(s) == 4,
        domain_names=("substrate",),
        **_IN,
    ),
    "infidelity": Spec(
        lambda x, y, a: metrics.infidelity(_prob(y), x, a, key=KEY, num_samples=2),
        per_example,
        **_IN,
    ),
    "completeness_delta": Spec(
        lambda x, y, a: metrics.completeness_delta(_prob(y), x, a, None), per_example, **_IN
    ),
    "max_sensitivity": Spec(
        lambda x, y, a: metrics.max_sensitivity(_explain(y), x, key=KEY, num_samples=2),
        per_example,
        **_IN,
    ),
    "random_perturbation_similarity": Spec(
        lambda x, y, a: metrics.random_perturbation_similarity(
            _explain(y), x, key=KEY, num_draws=2
        ),
        per_example,
        **_IN,
    ),
    "ape": Spec(
        lambda x, y, a: metrics.ape(apply_fn, PARAMS, x, y, a, epsilon=0.1, num_steps=1),
        per_example,
        ranks=(2, 4),
    ),
    "retrieval": Spec(
        lambda x, y, a: metrics.retrieval(apply_fn, PARAMS, x, a, y),
        per_example,
        ranks=(2, 4),
        x_names=("x_adv",),
        y_names=("clean_label",),
    ),
    "retrieval_specificity": Spec(
        lambda x, y, a: metrics.retrieval_specificity(
            apply_fn, PARAMS, x, a, -a, y, (y + 1) % K, fraction=0.5, key=KEY
        ),
        per_example,
        ranks=(2, 4),
        x_names=("x_adv",),
        y_names=("clean_label", "other_label"),
    ),
    "robust_accuracy": Spec(
        lambda x, y, a: metrics.robust_accuracy(
            apply_fn, PARAMS, x, y, [attacks.fgsm(epsilon=0.1)], key=KEY
        ),
        per_example,
        min_rank=2,
    ),
    "attack_robustness": Spec(
        lambda x, y, a: metrics.attack_robustness(
            _TOPK, _gradient_map, apply_fn, PARAMS, x, y, k=1
        ),
        per_example,
        min_rank=2,
    ),
    # Maps: the fuzzed array is the map (integers and bools are cast), a float map beside it.
    "heatmap": Spec(
        lambda x, y, a: metrics.heatmap(x),
        shaped(lambda s: s[:-1] if len(s) >= 3 else s),
        x_names=("attribution",),
        **_MAP,
    ),
    "pearson": Spec(lambda x, y, a: metrics.pearson(x, a), per_example, x_names=("a",), **_MAP),
    "cosine_similarity": Spec(
        lambda x, y, a: metrics.cosine_similarity(x, a), per_example, x_names=("a",), **_MAP
    ),
    "mse": Spec(lambda x, y, a: metrics.mse(x, a), per_example, x_names=("a",), **_MAP),
    "ssim": Spec(
        lambda x, y, a: metrics.ssim(x, a),
        per_example,
        ranks=(3,),
        x_names=("a",),
        domain=lambda s: min(s[1:]) >= 7,
        domain_names=("window_size",),
        **_MAP,
    ),
    "spearman": Spec(lambda x, y, a: metrics.spearman(x, a), per_example, x_names=("a",), **_MAP),
    "kendall_tau": Spec(
        lambda x, y, a: metrics.kendall_tau(x, a), per_example, x_names=("a",), **_MAP
    ),
    "topk_intersection": Spec(
        lambda x, y, a: metrics.topk_intersection(x, a, 1),
        per_example,
        min_rank=2,
        x_names=("map_a",),
        **_MAP,
    ),
    "center_of_mass": Spec(
        lambda x, y, a: metrics.center_of_mass(x),
        shaped(lambda s: (s[0], len(s) - 1)),
        min_rank=2,
        x_names=("maps",),
        **_MAP,
    ),
    "center_of_mass_shift": Spec(
        lambda x, y, a: metrics.center_of_mass_shift(x, a),
        per_example,
        min_rank=2,
        x_names=("map_a",),
        **_MAP,
    ),
    "average_ranks": Spec(
        lambda x, y, a: metrics.average_ranks(x),
        shaped(lambda s: s),
        ranks=(2,),
        x_names=("v",),
        **_MAP,
    ),
    "energy_game": Spec(
        lambda x, y, a: metrics.energy_game(x, _boxes(len(x))),
        per_example,
        ranks=(3, 4),
        x_names=("attribution",),
        **_MAP,
    ),
    "distractor_game": Spec(
        lambda x, y, a: metrics.distractor_game(x, _boxes(len(x)), _boxes(len(x)) + 1.0),
        per_example,
        ranks=(3, 4),
        x_names=("attribution",),
        **_MAP,
    ),
    "pointing_game": Spec(
        lambda x, y, a: metrics.pointing_game(x, _boxes(len(x)), tolerance=1.0),
        per_example,
        ranks=(3, 4),
        x_names=("attribution",),
        **_MAP,
    ),
    "gini": Spec(lambda x, y, a: metrics.gini(x), per_example, x_names=("attribution",), **_MAP),
    "spatial_coherence": Spec(
        lambda x, y, a: metrics.spatial_coherence(x, key=KEY, num_permutations=2),
        per_example,
        ranks=(3, 4),
        x_names=("attribution",),
        **_MAP,
    ),
    "box_mask": Spec(  # The fuzzed array as the boxes [B, 4].
        lambda x, y, a: metrics.box_mask(x, (4, 5)),
        shaped(lambda s: (s[0], 4, 5)),
        ranks=(2,),
        x_names=("bbox",),
        domain=lambda s: s[1] == 4,
        domain_names=("bbox",),
        **_MAP,
    ),
    "Accumulator": Spec(  # Per-example values [B]; no values at all is an empty state.
        lambda x, y, a: metrics.Accumulator.from_values(x),
        lambda out, s: None,
        ranks=(1,),
        x_names=("values",),
        empty_ok=True,
        **_MAP,
    ),
    "accumulate": Spec(
        lambda x, y, a: metrics.accumulate({}, {"v": x}),
        lambda out, s: None,
        ranks=(1,),
        x_names=("values",),
        empty_ok=True,
        **_MAP,
    ),
}


# ------------------------------------------------------------------------------ the property


def _names(name: str, message: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message) is not None


def _x_bad(spec: Spec, case: Case) -> bool:
    rank = len(case.shape)
    if (spec.ranks is not None and rank not in spec.ranks) or rank < spec.min_rank:
        return True
    if case.b == 0 and not spec.empty_ok:
        return True
    if spec.role == "input":
        return case.dtype not in FLOATS or case.layout == "nchw"
    return case.dtype == "complex64"


_JITTED: dict[Spec, Callable[..., Any]] = {}  # Holds the specs: no id is ever reused.


def _call(spec: Spec, case: Case, x, y, a):
    """``spec.call`` eagerly where a value check must see the values (labels −1 or ``K``),
    else under ``jit`` (one compilation per shape, reused; shape and dtype checks raise
    while tracing exactly as they do eagerly, and the values are valid by construction:
    ``x`` in ``[0, 1]``, labels in ``[0, K)``)."""
    if spec.labels and case.labels in ("-1", "K") and case.b > 0:
        return spec.call(x, y, a)
    if spec not in _JITTED:
        options = {"xla_backend_optimization_level": 0}
        _JITTED[spec] = jax.jit(spec.call, compiler_options=options)
    return _JITTED[spec](x, y, a)


def check(spec: Spec, case: Case) -> None:
    x, y, a = case.arrays()
    broken = list(spec.x_names) if _x_bad(spec, case) else []
    if spec.labels and case.labels_bad:
        broken += spec.y_names
    x_ok = not _x_bad(spec, case)
    outside = x_ok and spec.domain is not None and not spec.domain(case.shape)
    try:
        out = _call(spec, case, x, y, a)
    except (ValueError, TypeError) as e:
        message = f"{type(e).__name__}: {e}"
        allowed = broken + (list(spec.x_names) + list(spec.domain_names) if outside else [])
        assert allowed, f"a valid input was refused: {case}: {message}"
        assert any(_names(n, message) for n in allowed), f"{message!r} names none of {allowed}"
        return
    assert not broken, f"broken {broken} gave an answer instead of an error: {case}"
    spec.check(out, case.shape)
    for leaf in jax.tree.leaves(spec.finite(out)):
        assert np.all(np.isfinite(np.asarray(leaf))), f"non-finite result for {case}: {leaf}"


# Each valid call compiles for its shapes: the iterative methods get fewer examples.
SLOW = {
    "big", "bsm", "relex", "rise", "smoothgrad", "vargrad", "occlusion", "ig", "regadv",
    "regadv_l2", "pgd_l2_perturbation", "pgd_perturbation", "boundary_search", "cw_l2",
    "apgd_ce", "apgd_t", "pgd",
    "attack_robustness", "ape", "adversarial_training", "trades", "hessian_norm", "curvature",
    "gradient_alignment", "retrieval_specificity", "random_perturbation_similarity",
    "max_sensitivity",
}  # fmt: skip


def _n(name: str) -> int:
    """Examples per function; ``JAXINTERP_FUZZ_SCALE=10`` runs ten times as many (and
    ``JAXINTERP_FUZZ_RANDOM=1`` draws new ones instead of the fixed sequence)."""
    return (2 if name in SLOW else 4) * int(os.environ.get("JAXINTERP_FUZZ_SCALE", "1"))


def test_every_registered_method_and_public_metric_is_fuzzed():
    assert set(EXPLAINER_SETTINGS) == set(attribution.EXPLAINERS)
    assert set(ATTACK_SETTINGS) == set(attacks.ATTACKS)
    assert set(PENALTY_SETTINGS) == set(regularizers.PENALTIES)
    assert set(metrics.__all__) - {"SIMILARITIES", "SUBSTRATES"} == set(METRIC_SPECS)


@pytest.mark.parametrize("name", sorted(EXPLAINER_SETTINGS))
def test_explainers(name):
    spec = _explainer_spec(name)

    @fuzz(_n(name))
    def run(case):
        check(spec, case)

    run()


@pytest.mark.parametrize("name", sorted(ATTACK_SETTINGS))
def test_attacks(name):
    spec = _attack_spec(name)

    @fuzz(_n(name))
    def run(case):
        check(spec, case)

    run()


@pytest.mark.parametrize("name", sorted(PENALTY_SETTINGS))
def test_penalties(name):
    spec = _penalty_spec(name)

    @fuzz(_n(name))
    def run(case):
        check(spec, case)

    run()


@pytest.mark.parametrize("name", sorted(METRIC_SPECS))
def test_metrics(name):
    spec = METRIC_SPECS[name]

    @fuzz(_n(name))
    def run(case):
        check(spec, case)

    run()
