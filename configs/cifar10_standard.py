"""Standard training of the LeNet-style softplus CNN on CIFAR-10.

Reference setting of Joo et al. (AAAI 2023) for the CIFAR-10 LeNet: Softplus(β=3), Adam 1e-3,
weight decay 4e-5, batch 128, gradient clipping at norm 0.5. Needs the data:
`jaxinterp prepare --dataset cifar10`.
"""

from jaxinterp.experiments.defaults import base_config


def get_config():
    c = base_config()
    c.dataset = "cifar10"
    c.model = "cnn"
    c.beta = 3.0
    c.optimizer = "adam"
    c.learning_rate = 1e-3
    c.weight_decay = 4e-5
    c.grad_clip_norm = 0.5
    c.batch_size = 128
    c.num_steps = 39_100  # 100 epochs of 391 steps
    c.checkpoint_every = 2_000
    c.log_every = 100
    c.eval_every = 3_910
    return c
