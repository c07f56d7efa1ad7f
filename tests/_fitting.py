"""A small softplus MLP trained on the embedded digits, shared by the attack/attribution tests."""

import jax
import jax.numpy as jnp
import optax

from jaxinterp import data, models


def fit_digits_mlp(data_dir: str, *, num_steps: int, key: jax.Array, hidden=(32,)):
    """A softplus(β=3) MLP fitted by :func:`fit_digits`; returns ``(module, model, params)``."""
    module = models.MLP(num_classes=10, hidden=hidden, activation="softplus", beta=3.0)
    return fit_digits(data_dir, module, num_steps=num_steps, key=key)


def fit_digits(
    data_dir: str, module, *, num_steps: int, key: jax.Array, fast_compile=True, num_examples=None
):
    """Full-batch Adam (lr 1e-2) on the digits train split; returns ``(module, model, params)``.

    ``fast_compile``: XLA optimisation level 0, right for small MLPs (the tests are
    compile-bound on CPU) but slow for convolutions. ``num_examples``: fit the first ones only.
    """
    train = data.load_split("digits", "train", data_dir=data_dir)
    model = models.from_linen(module)
    options = {"xla_backend_optimization_level": 0} if fast_compile else None
    n = num_examples or len(train)
    x_train, y_train = jnp.asarray(train.images[:n]), jnp.asarray(train.labels[:n])
    opt = optax.adam(1e-2)

    def mean_ce(params):
        logits = model.apply_fn(params, x_train)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_train))

    def step(params, state):
        updates, state = opt.update(jax.grad(mean_ce)(params), state, params)
        return optax.apply_updates(params, updates), state

    # A Python loop over a jitted step: XLA:CPU runs convolutions inside a while loop
    # (fori_loop) about 10x slower than at top level.
    step = jax.jit(step, compiler_options=options)
    params = model.init(key, x_train[:1])
    state = opt.init(params)
    for _ in range(num_steps):
        params, state = step(params, state)
    return module, model, params
