"""Standard training of the softplus CNN on MNIST (needs `jaxinterp prepare --dataset mnist`)."""

from jaxinterp.experiments.defaults import base_config


def get_config():
    c = base_config()
    c.dataset = "mnist"
    c.num_steps = 5_000  # ~10 epochs at batch 128
    c.checkpoint_every = 1_000
    c.log_every = 100
    c.eval_every = 1_000
    return c
