"""A small softplus MLP trained on the embedded digits, shared by the attack/attribution tests."""

import jax
import jax.numpy as jnp
import optax

from jaxinterp import data, models


def fit_digits_mlp(data_dir: str, *, num_steps: int, key: jax.Array, hidden=(32,)):
    """Full-batch Adam (lr 1e-2) on the digits train split; returns ``(module, model, params)``.

    Compiled at XLA optimisation level 0: the tests are compile-bound on CPU.
    """
    train = data.load_split("digits", "train", data_dir=data_dir)
    module = models.MLP(num_classes=10, hidden=hidden, activation="softplus", beta=3.0)
    model = models.from_linen(module)
    x_train, y_train = jnp.asarray(train.images), jnp.asarray(train.labels)
    opt = optax.adam(1e-2)

    def mean_ce(params):
        logits = model.apply_fn(params, x_train)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_train))

    def fit(params):
        def body(_, carry):
            params, state = carry
            updates, state = opt.update(jax.grad(mean_ce)(params), state, params)
            return optax.apply_updates(params, updates), state

        return jax.lax.fori_loop(0, num_steps, body, (params, opt.init(params)))[0]

    fit = jax.jit(fit, compiler_options={"xla_backend_optimization_level": 0})
    return module, model, fit(model.init(key, x_train[:1]))
