"""jaxinterp.core: the check policy, the gradient-step loop, the registry and the adapter."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxinterp import attacks, attribution, core, models, regularizers
from jaxinterp.core import checks
from jaxinterp.experiments.penalties import build_penalty


def test_check_policy_type_vs_value():
    # A wrong type is a TypeError (and, for 0.1 callers, a ValueError); a wrong value only
    # a ValueError. Both name the argument.
    for bad in ("3", 2.5, True, None):
        with pytest.raises(TypeError, match="num_steps must be an integer >= 1"):
            checks.integer("num_steps", bad)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1, got 0") as e:
        checks.integer("num_steps", 0)
    assert not isinstance(e.value, TypeError)
    assert checks.integer("k", np.int64(3)) == 3
    with pytest.raises(TypeError, match="epsilon must be a finite number > 0"):
        checks.positive("epsilon", "0.1")
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
            checks.positive("epsilon", bad)
    assert checks.real("gamma", 1, low=0.0, high=1.0) == 1.0
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0 and <= 1"):
        checks.real("gamma", 1.5, low=0.0, high=1.0)
    with pytest.raises(TypeError, match="x must be a float array"):
        checks.array(jnp.zeros((2, 3), jnp.int32), "x")
    assert checks.array(jnp.zeros((2, 3), jnp.int32), "m", cast=True).dtype == jnp.float32
    with pytest.raises(ValueError, match=r"x must be \[B, H, W, C\]"):
        checks.array(jnp.zeros((2, 3)), "x", ndims=(4,))


def test_labels_are_checked_for_shape_dtype_and_range():
    y = checks.labels(jnp.array([0, 2]), 2, num_classes=3)
    assert y.shape == (2,)
    with pytest.raises(ValueError, match=r"y must be \[B\]"):
        checks.labels(jnp.array([0]), 2)  # a [1] array does not broadcast to a batch
    with pytest.raises(TypeError, match="integer labels"):
        checks.labels(jnp.array([0.0, 1.0]), 2)
    for bad in ([-1, 0], [0, 3]):
        with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
            checks.labels(jnp.array(bad), 2, num_classes=3)
    # The class scores and losses use it: label -1 no longer scores the last class.
    logits = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="lie in"):
        core.ce_loss(logits, jnp.array([-1, 0]))
    score = core.class_score(lambda p, x: x, None, jnp.array([-1, 0]))
    with pytest.raises(ValueError, match="lie in"):
        score(logits)


def _quadratic(target):
    return lambda z: -jnp.sum(jnp.square(z - target))  # maximised at target


def test_gradient_steps_sign_l2_mask_and_projection_match_a_hand_loop():
    target = jnp.array([[1.0, -2.0, 0.5]])
    x0 = jnp.zeros((1, 3))
    mask = jnp.array([[1.0, 1.0, 0.0]])
    out = core.gradient_steps(
        _quadratic(target), x0, num_steps=3, step_size=0.3, mask=mask,
        project=lambda z: jnp.clip(z, -0.5, 0.5),
    )  # fmt: skip
    z = x0
    for _ in range(3):
        g = jax.grad(_quadratic(target))(z)
        z = jnp.clip(z + 0.3 * jnp.sign(g) * mask, -0.5, 0.5)
    np.testing.assert_array_equal(out, z)
    np.testing.assert_allclose(out, [[0.5, -0.5, 0.0]])
    l2 = core.gradient_steps(_quadratic(target), x0, num_steps=1, step_size=1.0, direction="l2")
    np.testing.assert_allclose(l2, target / jnp.linalg.norm(target), rtol=1e-6)
    down = core.gradient_steps(
        lambda z: jnp.sum(jnp.square(z)), jnp.ones((1, 3)), num_steps=1, step_size=0.5,
        maximize=False,
    )  # fmt: skip
    np.testing.assert_allclose(down, 0.5 * jnp.ones((1, 3)))


def test_gradient_steps_takes_a_traced_step_size():
    """One jitted loop for several step sizes (the boundary ladder's use): a traced ``α``
    takes the same steps as the Python float, descending as well as ascending."""
    target = jnp.array([[1.0, -2.0, 0.5]])
    x0 = jnp.zeros((1, 3))

    def run(alpha, maximize):
        return core.gradient_steps(
            _quadratic(target), x0, num_steps=3, step_size=alpha, direction="l2",
            maximize=maximize,
        )  # fmt: skip

    traced = jax.jit(run, static_argnums=1)
    for alpha in (0.1, 0.7):
        for maximize in (True, False):
            np.testing.assert_array_equal(
                traced(jnp.float32(alpha), maximize), run(alpha, maximize)
            )
    with pytest.raises(ValueError, match="step_size"):
        run(-0.1, True)  # a Python step size is still checked


def test_gradient_steps_optimizer_and_observe():
    target = jnp.array([[3.0, -1.0]])
    opt = optax.sgd(0.25)

    def observe(acc, z, aux):
        return acc + aux  # aux: the objective's value at the iterate (before its step)

    def objective(z):
        value = -jnp.sum(jnp.square(z - target))
        return value, value

    x, total = core.gradient_steps(
        objective, jnp.zeros((1, 2)), num_steps=2, optimizer=opt, has_aux=True,
        observe=observe, observed=jnp.zeros(()),
    )  # fmt: skip
    z, s = jnp.zeros((1, 2)), opt.init(jnp.zeros((1, 2)))
    acc = 0.0
    for _ in range(2):
        acc += objective(z)[0]
        g = jax.grad(lambda v: objective(v)[0])(z)
        u, s = opt.update(-g, s, z)
        z = optax.apply_updates(z, u)
    np.testing.assert_allclose(x, z, rtol=1e-6)
    np.testing.assert_allclose(total, acc, rtol=1e-6)
    with pytest.raises(ValueError, match="direction must be one of"):
        core.gradient_steps(objective, x, num_steps=1, step_size=0.1, direction="linf")
    with pytest.raises(ValueError, match="step_size"):
        core.gradient_steps(objective, x, num_steps=1)


def test_registry_register_build_check_and_tags():
    reg = core.Registry("widget")

    def make(*, size: int = 1, colour: str = "red"):
        """A widget factory."""
        return (size, colour)

    reg.register("small", make, tags=("cheap",))
    reg.register("large", make, size=10, summary="a big one")
    assert reg.names() == ("small", "large") and reg.names("cheap") == ("small",)
    assert reg.build("large") == (10, "red") and reg.build("large", size=3) == (3, "red")
    assert reg.get("small").summary == "A widget factory." and reg["small"] is make
    assert reg.get("small").accepts("colour") and not reg.get("small").accepts("features_fn")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("small", make)
    with pytest.raises(ValueError, match="unknown widget 'medium'; known: small, large"):
        reg.get("medium")
    with pytest.raises(ValueError, match=r"unknown widget\(s\) medium"):
        reg.check(["small", "medium"])
    with pytest.raises(ValueError, match="none given"):
        reg.check([])
    reg.unregister("small")
    assert "small" not in reg and len(reg) == 1


def test_every_registered_method_builds_with_its_defaults():
    model = models.get_model("mlp", num_classes=3, hidden=(4,))
    context = {"layer_fn": model.layer_fn, "features_fn": model.features_fn}
    for name in attribution.EXPLAINERS:  # A job passes what it knows of its model.
        assert callable(attribution.EXPLAINERS.build(name, context=context)), name
    with pytest.raises(ValueError, match="layer_fn=model.layer_fn"):
        attribution.EXPLAINERS.build("grad_cam")
    for name in regularizers.PENALTIES:
        entry = regularizers.PENALTIES.get(name)
        extra = {"features_fn": lambda p, x: {}} if entry.accepts("features_fn") else {}
        assert callable(entry.build(**extra)), name
    for name in attacks.ATTACKS:
        assert callable(attacks.ATTACKS.build(name)), name


def test_explainer_adapter_equals_the_building_block():
    w = jax.random.normal(jax.random.key(0), (6, 3))

    def apply_fn(p, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ p)

    x = jax.random.uniform(jax.random.key(1), (4, 6))
    y = jnp.array([0, 1, 2, 1])
    explain = attribution.explainer(attribution.integrated_gradients, num_steps=8)
    direct = attribution.integrated_gradients(
        attribution.class_score(apply_fn, w, y), x, num_steps=8
    )
    np.testing.assert_allclose(explain(apply_fn, w, x, y), direct, rtol=1e-6, atol=1e-7)
    # The smoothing methods take the key.
    sg = attribution.smooth_explainer(num_samples=3)
    a1 = sg(apply_fn, w, x, y, key=jax.random.key(2))
    a2 = sg(apply_fn, w, x, y, key=jax.random.key(3))
    assert a1.shape == x.shape and not np.allclose(a1, a2)


def test_a_penalty_added_by_one_registry_line_builds_from_a_config():
    def l2_logits(*, scale: float = 1.0):
        def penalty(apply_fn, params, x, y, *, key):
            return scale * jnp.mean(jnp.square(apply_fn(params, x))), {}

        return penalty

    regularizers.PENALTIES.register("toy_l2_logits", l2_logits)
    try:
        config = ml_collections.ConfigDict({"toy_l2_logits": {"weight": 2.0, "scale": 3.0}})
        combined = build_penalty(config)
        value, terms = combined(
            lambda p, x: x * p, 2.0, jnp.ones((2, 3)), None, key=jax.random.key(0)
        )
        np.testing.assert_allclose(value, 2.0 * 3.0 * 4.0)
        assert "toy_l2_logits" in terms
    finally:
        regularizers.PENALTIES.unregister("toy_l2_logits")


def _private_imports_across_subpackages(path: str, source: str) -> list[str]:
    """``from jaxinterp.Q._m import ...`` / ``from jaxinterp.Q import _m`` in a file outside
    subpackage ``Q`` (relative imports stay inside their package)."""
    import ast

    parts = path.replace("\\", "/").split("/")
    home = parts[parts.index("jaxinterp") + 1] if len(parts) > parts.index("jaxinterp") + 2 else ""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        mod = node.module.split(".")
        if mod[0] != "jaxinterp" or len(mod) < 2:
            continue
        names = [a.name for a in node.names]
        private = any(m.startswith("_") for m in mod[2:]) or any(n.startswith("_") for n in names)
        if mod[1] != home and (private or mod[1].startswith("_")):
            bad.append(f"{path}:{node.lineno}: from {node.module} import {', '.join(names)}")
    return bad


def test_no_private_import_crosses_a_subpackage():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "jaxinterp"
    bad = []
    for f in sorted(root.rglob("*.py")):
        rel = str(f.relative_to(root.parent))
        bad += _private_imports_across_subpackages(rel, f.read_text())
    # jaxinterp/__init__.py may import the top-level private module it re-exports.
    assert [b for b in bad if not b.startswith("jaxinterp/__init__.py")] == []
    # The check finds what it looks for.
    sample = "from jaxinterp.attacks._pgd import check_call\nfrom jaxinterp.core import ops\n"
    assert len(_private_imports_across_subpackages("jaxinterp/metrics/_ape.py", sample)) == 1
    assert _private_imports_across_subpackages("jaxinterp/attacks/_x.py", sample) == []


def test_ties_are_broken_at_random_never_by_index():
    from jaxinterp.core.ops import descending_ranks, topk_intersection, topk_mask

    flat_map = jnp.zeros((1, 64))
    tops = []
    for seed in range(40):
        key = jax.random.PRNGKey(seed)
        ranks = np.asarray(descending_ranks(flat_map, key=key))[0]
        assert sorted(ranks.tolist()) == list(range(64))  # A ranking: a permutation.
        top = np.asarray(topk_mask(flat_map, 8, key=key))[0]
        assert top.sum() == 8
        np.testing.assert_array_equal(top, ranks < 8)  # One tie order for both.
        tops.append(top)
    share = np.mean(tops, axis=0)
    assert share[:8].mean() < 0.5  # By index, the first 8 entries would always be the top.
    assert np.all(share > 0) or np.count_nonzero(share) > 48  # Every entry can be picked.
    # Distinct values keep their order whatever the key; only tied entries are shuffled.
    v = jnp.array([[3.0, 1.0, 1.0, 1.0, 5.0, 0.0]])
    for seed in range(5):
        r = np.asarray(descending_ranks(v, key=jax.random.PRNGKey(seed)))[0]
        assert r[4] == 0 and r[0] == 1 and r[5] == 5 and sorted(r[1:4]) == [2, 3, 4]
    # Batched rows get the ranking they get alone (one tie order per call, not per batch).
    both = jnp.concatenate([flat_map, flat_map])
    np.testing.assert_array_equal(
        descending_ranks(both, key=jax.random.PRNGKey(3))[1],
        descending_ranks(flat_map, key=jax.random.PRNGKey(3))[0],
    )
    # Two identical constant maps: their top sets are drawn independently.
    inter = topk_intersection(flat_map, flat_map, 16, key=jax.random.PRNGKey(0))
    assert float(inter[0]) < 1.0


def test_max_normalized_map_sums_channels_peaks_at_one_and_keeps_zero_maps_zero():
    from jaxinterp.core.ops import max_normalized_map

    a = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 5, 2)), jnp.float32)
    a = a.at[2].set(0.0)
    h = jax.jit(max_normalized_map)(a)
    assert h.shape == (3, 4, 5)
    s = jnp.sum(jnp.abs(a), axis=-1)
    np.testing.assert_allclose(h[:2], s[:2] / jnp.max(s[:2], axis=(1, 2), keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(jnp.max(h[:2], axis=(1, 2)), 1.0, rtol=1e-6)
    assert float(jnp.max(jnp.abs(h[2]))) == 0.0
    # [B, F] is not channel-summed; the gradient at an all-zero map is finite.
    np.testing.assert_allclose(max_normalized_map(jnp.asarray([[1.0, -2.0]])), [[0.5, 1.0]])
    g = jax.grad(lambda v: jnp.sum(max_normalized_map(v)))(jnp.zeros((1, 2, 2, 1)))
    assert bool(jnp.all(jnp.isfinite(g)))
