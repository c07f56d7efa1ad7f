"""The train step: purity, no recompilation, penalties, and 1 vs 4 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxinterp import models, regularizers, training
from jaxinterp.data import batching


def _setup(num_devices, *, penalty=None, seed=0):
    model = models.get_model("cnn", num_classes=10, activation="softplus", beta=3.0)
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(16, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=16).astype(np.int32)
    params = model.init(jax.random.PRNGKey(0), x[:1])
    tx = optax.adam(1e-3)
    mesh = training.make_data_mesh(num_devices)
    state = training.replicate(
        training.create_train_state(params, tx, key=jax.random.PRNGKey(1)), mesh
    )
    step = training.jit_train_step(
        training.make_train_step(model.apply_fn, tx, penalty=penalty), mesh
    )
    batch = training.shard_batch({"image": x, "label": y}, mesh)
    return state, step, batch


def _l2(apply_fn, params, x, y, *, key):
    return sum(jnp.sum(p**2) for p in jax.tree.leaves(params))


def _noisy_logit_norm(apply_fn, params, x, y, *, key):
    noise = jax.random.normal(key, x.shape, x.dtype)
    return jnp.mean(apply_fn(params, x + 0.1 * noise) ** 2), {"noise_mean": jnp.mean(noise)}


def test_second_call_does_not_recompile_and_loss_decreases():
    state, step, batch = _setup(1)
    losses = []
    for _ in range(10):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1
    assert int(state.step) == 10
    assert losses[-1] < losses[0]


def test_combine_reports_each_term_and_adds_weighted_total():
    penalty = regularizers.combine(l2=(1e-3, _l2), noisy=(0.5, _noisy_logit_norm))
    state, step, batch = _setup(1, penalty=penalty)
    expected_l2 = float(_l2(None, state.params, None, None, key=None))
    _, metrics = step(state, batch)  # the state is donated: read it before
    np.testing.assert_allclose(metrics["l2"], expected_l2, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["penalty"], 1e-3 * metrics["l2"] + 0.5 * metrics["noisy"], rtol=1e-5
    )
    np.testing.assert_allclose(metrics["loss"], metrics["ce"] + metrics["penalty"], rtol=1e-5)
    assert "noisy/noise_mean" in metrics


def test_step_key_is_folded_from_the_step():
    seen = []

    def record_key(apply_fn, params, x, y, *, key):
        seen.append(key)
        return jax.random.uniform(key)

    penalty = regularizers.combine(u=(1.0, record_key))
    state, step, batch = _setup(1, penalty=penalty)
    _, m0 = step(state, batch)
    state2, step2, batch2 = _setup(1, penalty=penalty)
    state2, _ = step2(state2, batch2)
    _, m1 = step2(state2, batch2)
    assert float(m0["u"]) != float(m1["u"])  # a new key at every step
    state3, step3, batch3 = _setup(1, penalty=penalty)
    _, m0_again = step3(state3, batch3)
    assert float(m0["u"]) == float(m0_again["u"])  # and the same key for the same step


def test_one_and_four_devices_agree():
    assert jax.device_count() >= 4
    results = []
    for n in (1, 4):
        state, step, batch = _setup(n, penalty=regularizers.combine(l2=(1e-4, _l2)))
        for _ in range(3):
            state, metrics = step(state, batch)
        results.append((jax.device_get(state.params), jax.device_get(metrics)))
    (p1, m1), (p4, m4) = results
    # float32 all-reduce order differs between 1 and 4 devices: agree to ~1e-6 relative.
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
    # Adam divides by sqrt(v): for a weight whose gradient is near round-off the reduction
    # order can change its step (at most lr = 1e-3), so the params agree to 1% of one step
    # (an AVX-512 CPU showed 2.3e-6 on 1 of 65,536 weights).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p1, p4)


def test_combine_rejects_bad_weights():
    with pytest.raises(ValueError, match="weight of penalty 'l2' must be a finite number >= 0"):
        regularizers.combine(l2=(-1.0, _l2))
    with pytest.raises(TypeError, match="must be given as \\(weight, penalty\\)"):
        regularizers.combine(l2=_l2)
    with pytest.raises(TypeError, match="penalty 'l2' must be callable"):
        regularizers.combine(l2=(1.0, 3))


def test_batches_are_deterministic_and_partition_over_processes():
    a = batching.train_batch_indices(7, num_examples=100, batch_size=16, seed=3)
    b = batching.train_batch_indices(7, num_examples=100, batch_size=16, seed=3)
    np.testing.assert_array_equal(a, b)
    epoch = np.concatenate(
        [batching.train_batch_indices(s, num_examples=100, batch_size=16, seed=3) for s in range(6)]
    )
    assert len(set(epoch.tolist())) == 96  # one epoch: distinct examples
    parts = [batching.local_slice(a, process_index=i, process_count=4) for i in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), a)
    with pytest.raises(ValueError, match="larger than the training set"):
        batching.train_batch_indices(0, num_examples=10, batch_size=16, seed=0)
    idx, mask = zip(*batching.eval_batches(10, 4), strict=True)
    assert sum(m.sum() for m in mask) == 10 and all(len(i) == 4 for i in idx)


def test_optimizer_and_schedule_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'adagradx'"):
        training.make_optimizer("adagradx", optax.constant_schedule(0.1))
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        training.make_schedule("linear", learning_rate=0.1, num_steps=10)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        training.make_schedule("constant", learning_rate=0.0, num_steps=10)
    with pytest.raises(ValueError, match="num_devices=9"):
        training.make_data_mesh(9)


def test_progress_prints_lines_off_a_terminal_at_most_every_interval(capsys):
    # Under pytest stderr is captured: not a terminal, like a log file or CI.
    bar = training.progress_bar(3, 0, enabled=True, desc="job", every=0.0, unit="batch")
    for _ in range(3):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"job: batch {i}/3" for i in (1, 2, 3)]
    assert "left)" in lines[0] and "left" not in lines[-1]
    bar = training.progress_bar(5, 1, enabled=True, desc="job", every=1e9)
    for _ in range(4):
        bar.update(1)
    assert capsys.readouterr().err.splitlines() == ["job: step 5/5 (0s)"]  # only the end
    for enabled, desc in ((False, "job"), (True, None)):  # off, or no lines without desc
        quiet = training.progress_bar(2, 0, enabled=enabled, desc=desc, every=0.0)
        quiet.update(2)
        quiet.close()
    assert capsys.readouterr().err == ""


def _unshared(penalty):
    """``penalty`` without its shared logits: the step runs a forward pass of its own."""

    def wrapped(*args, **kwargs):
        total, terms = penalty(*args, **kwargs)
        return total, {k: v for k, v in terms.items() if k != regularizers.SHARED_LOGITS}

    return wrapped


def _tiny_cnn_batch():
    model = models.get_model(
        "cnn", num_classes=10, activation="softplus", beta=3.0, channels=(2, 2, 3, 3), hidden=5
    )
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(6, 8, 8, 1))
    y = rng.integers(0, 10, size=6).astype(np.int32)
    return model, x, y


def _float64_state(model, x, tx):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(jax.random.PRNGKey(0), x[:1]))
    return training.create_train_state(params, tx, key=jax.random.PRNGKey(1))


def _step_outputs(model, tx, state, batch, penalty, **kwargs):
    step = jax.jit(training.make_train_step(model.apply_fn, tx, penalty=penalty, **kwargs))
    hlo = step.lower(state, batch).compile().as_text()
    new, metrics = step(state, batch)
    return new.params, metrics, hlo.count(" convolution(")


@pytest.mark.parametrize(
    "name,factory",
    [
        ("ign_fast", lambda: regularizers.input_gradient_norm(impl="fast")),
        ("ign_autodiff", lambda: regularizers.input_gradient_norm(impl="autodiff")),
        ("ign_logit_fast", lambda: regularizers.input_gradient_norm(score="logit", impl="fast")),
        ("cure_autodiff", lambda: regularizers.curvature(impl="autodiff")),
        ("cure_fast", lambda: regularizers.curvature(impl="fast")),
        # Detached source: the backward passes at x and x + δ stay apart, and XLA already
        # merges the two forward passes at x, so sharing saves no convolution here.
        ("lga_autodiff", lambda: regularizers.gradient_alignment(impl="autodiff")),
        (
            "lga_attached_fast",
            lambda: regularizers.gradient_alignment(detach_source=False, impl="fast"),
        ),
        ("hessian_autodiff", lambda: regularizers.hessian_norm(impl="autodiff")),
        ("trades", lambda: regularizers.trades(epsilon=0.1, num_steps=2)),
        ("act_sens_autodiff", "autodiff"),
        ("act_sens_fast", "fast"),
    ],
)
def test_a_penalty_shares_its_logits_with_the_same_step(name, factory):
    model, x, y = _tiny_cnn_batch()
    if name.startswith("act_sens"):  # the model's layer_fn gives the logits of its pass
        impl = factory
        factory = lambda: regularizers.activation_sensitivity(  # noqa: E731
            model.features_fn, impl=impl, layer_fn=model.layer_fn
        )
    tx = optax.sgd(1.0)
    with jax.enable_x64(True):
        state = _float64_state(model, x, tx)
        batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
        pen = regularizers.combine(p=(0.7, factory()))
        _, terms = pen(model.apply_fn, state.params, batch["image"], batch["label"], key=state.key)
        np.testing.assert_allclose(  # the logits at x, offered to the step
            terms[regularizers.SHARED_LOGITS], model.apply_fn(state.params, batch["image"])
        )
        shared, m_shared, convs_shared = _step_outputs(model, tx, state, batch, pen)
        alone, m_alone, convs_alone = _step_outputs(model, tx, state, batch, _unshared(pen))
    assert regularizers.SHARED_LOGITS not in m_shared
    for k in ("ce", "loss", "accuracy"):
        np.testing.assert_allclose(m_shared[k], m_alone[k], rtol=1e-12)
    for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(alone), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # The step's backward pass at x joins the penalty's: fewer convolutions.
    if name == "lga_autodiff":
        assert convs_shared <= convs_alone, (convs_shared, convs_alone)
    else:
        assert convs_shared < convs_alone, (convs_shared, convs_alone)


def test_a_detached_point_offers_no_logits():
    """``fast`` gradient alignment with the source detached never runs the model at x with
    params attached, so it has no logits to share and the step computes its own."""
    model, x, y = _tiny_cnn_batch()
    pen = regularizers.gradient_alignment(impl="fast")
    params = model.init(jax.random.PRNGKey(0), x[:1])
    _, terms = pen(model.apply_fn, params, jnp.asarray(x, jnp.float32), y, key=jax.random.key(0))
    assert regularizers.SHARED_LOGITS not in terms


def test_no_backward_pass_for_a_cross_entropy_of_weight_zero():
    model, x, y = _tiny_cnn_batch()
    tx = optax.sgd(1.0)
    at = regularizers.adversarial_training(epsilon=0.1, num_steps=2)
    pen = regularizers.combine(at=(1.0, at))
    with jax.enable_x64(True):
        state = _float64_state(model, x, tx)
        batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
        zero, m_zero, convs_zero = _step_outputs(model, tx, state, batch, pen, ce_weight=0.0)
        tiny, m_tiny, convs_tiny = _step_outputs(model, tx, state, batch, pen, ce_weight=1e-300)
    np.testing.assert_allclose(m_zero["ce"], m_tiny["ce"], rtol=1e-12)
    np.testing.assert_allclose(m_zero["accuracy"], m_tiny["accuracy"])
    for a, b in zip(jax.tree.leaves(zero), jax.tree.leaves(tiny), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)
    assert convs_zero < convs_tiny, (convs_zero, convs_tiny)
