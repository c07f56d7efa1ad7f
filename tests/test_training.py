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
