"""Label attacks: adversarial examples that change a classifier's prediction.

Factories in the optax style close over the hyperparameters and return a pure, batched,
jittable ``attack(apply_fn, params, x, y, *, key=None) -> x_adv``:

* :func:`pgd`: projected gradient ascent in an L∞ or L2 ball (Madry et al. 2018), with an
  optional uniform random start.
* :func:`carlini_wagner_l2`: the CW-L2 attack (tanh space, Adam, binary search over ``c``).
* :func:`boundary_search`: the closest misclassified point (PGD-L2 ladder + CW-L2), for
  boundary attributions (Wang et al. 2022).
* :func:`topk_attack` (Ghorbani et al. 2019) and :func:`targeted_manipulation`
  (Dombrowski et al. 2019) attack the explanation while keeping the label.
* :func:`fgsm`: one full-size signed (L∞) or normalised (L2) gradient step
  (Goodfellow et al. 2015).
* :func:`apgd`: Auto-PGD (Croce & Hein 2020) on cross-entropy, DLR or the targeted DLR
  (APGD-T); :func:`autoattack_like` gives AutoAttack's two APGD members (not FAB, not
  Square). :func:`with_restarts` reruns any randomised attack from fresh keys.

Both ascend a per-example loss, :func:`ce_loss` or :func:`margin_loss`, untargeted (away from
the true labels ``y``) or targeted (toward target labels passed as ``y``). The model is held
fixed (``stop_gradient`` on ``params``) and ``x_adv`` carries no gradient, so adversarial
training differentiates only through the model evaluated at ``x_adv``.

Example::

    from jaxinterp import attacks

    attack = attacks.pgd(epsilon=0.1, num_steps=10, norm="linf")
    x_adv = jax.jit(attack, static_argnums=0)(apply_fn, params, x, y, key=key)
"""

from jaxinterp.core.losses import LOSSES, LossFn, ce_loss, get_loss, margin_loss
from jaxinterp.core.protocols import Attack
from jaxinterp.core.registry import Registry

from ._apgd import (
    APGD_LOSSES,
    apgd,
    apgd_checkpoints,
    autoattack_like,
    dlr_loss,
    dlr_targeted_loss,
)
from ._attribution_attacks import (
    AttributionAttackResult,
    frame_target,
    normalized_map,
    targeted_manipulation,
    topk_attack,
    topk_intersection,
)
from ._boundary import (
    DEFAULT_EPSILONS,
    BoundaryResult,
    BoundarySearch,
    boundary_search,
)
from ._carlini_wagner import CWAttack, CWResult, carlini_wagner_l2
from ._pgd import NORMS, fgsm, pgd
from ._remaining import SUB_BATCH_FRACTIONS
from ._restarts import with_restarts

ATTACKS = Registry("attack")
"""Label attacks by name: ``attack(apply_fn, params, x, y, *, key=None) -> x_adv`` (or a
NamedTuple whose first field is ``x_adv``)."""
ATTACKS.register("pgd", pgd, epsilon=0.1, num_steps=20)
ATTACKS.register("fgsm", fgsm, epsilon=0.1)
ATTACKS.register("cw_l2", carlini_wagner_l2)
ATTACKS.register("boundary_search", boundary_search)
ATTACKS.register("apgd_ce", apgd, loss="ce", epsilon=0.1, num_steps=100, summary="APGD-CE")
ATTACKS.register(
    "apgd_t", apgd, loss="dlr_targeted", epsilon=0.1, num_steps=100, summary="APGD-T (DLR)"
)

__all__ = [
    "APGD_LOSSES",
    "ATTACKS",
    "DEFAULT_EPSILONS",
    "LOSSES",
    "NORMS",
    "SUB_BATCH_FRACTIONS",
    "Attack",
    "AttributionAttackResult",
    "BoundaryResult",
    "BoundarySearch",
    "CWAttack",
    "CWResult",
    "LossFn",
    "apgd",
    "apgd_checkpoints",
    "autoattack_like",
    "boundary_search",
    "carlini_wagner_l2",
    "ce_loss",
    "dlr_loss",
    "dlr_targeted_loss",
    "fgsm",
    "frame_target",
    "get_loss",
    "margin_loss",
    "normalized_map",
    "pgd",
    "targeted_manipulation",
    "topk_attack",
    "topk_intersection",
    "with_restarts",
]
