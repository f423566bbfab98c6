"""Clean and attacked accuracy of a classifier under one named attack: what ``semcom attack --attack NAME --epsilon E``
reports (the robust masked VQ-VAE paper's Figs. 6 and 8 are this number swept over epsilon).

Attack names (:data:`ATTACKS`):

* ``fgsm``: the paper's semantic noise at the transmitter, the iterative FGSM of eq. (7) with K = 5 (K = 1 and
  alpha = epsilon is the one-step eq. (6)); epsilon bounds the infinity norm (one pixel's change, images in [0, 1]);
* ``pgd``: PGD with a random start and 20 steps, same budget: the stronger check;
* ``universal``: Algorithm 1's sample-independent noise, added to the model's input without a channel; epsilon
  bounds its 2-norm over a whole image. It is fitted on ``fit`` (images and labels the evaluation does not use,
  e.g. the training split) or, without ``fit``, on the evaluation images themselves (a white-box upper bound).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from semcom.attacks._common import check_count, check_input, check_labels, check_nonnegative
from semcom.attacks.projected import pgd
from semcom.attacks.transmitter import iterative_fgsm
from semcom.attacks.universal import receiver_noise, universal_noise
from semcom.errors import ConfigError

#: The named attacks :func:`attack_accuracy` runs.
ATTACKS = ("fgsm", "pgd", "universal")


def _predict(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def attack_accuracy(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                    attack: str, epsilon: float, *, batch_size: int = 256,
                    fit: tuple[torch.Tensor, torch.Tensor] | None = None, **options) -> dict:
    """``{"attack", "epsilon", "samples", "clean_accuracy", "attacked_accuracy", "success_rate"}`` for ``model``
    (inputs to logits) on ``images`` with ``labels``; ``success_rate`` is the fraction of correctly classified
    samples that the attack makes wrong. ``options`` go to the attack (K, alpha, restarts, clamp, ...). An
    ``nn.Module`` is evaluated in eval mode and put back in its mode afterwards."""
    if attack not in ATTACKS:
        raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")
    eps = check_nonnegative(epsilon, "epsilon")
    bs = check_count(batch_size, "batch_size")
    images = check_input(images, "images")
    labels = check_labels(labels, images)
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
    if modes:
        model.eval()
    try:
        clean = _predict(model, images, bs)
        if attack == "universal":
            fit_x, fit_y = (images, labels) if fit is None else fit
            delta = universal_noise(model, check_input(fit_x, "fit images"), check_labels(fit_y, fit_x), eps,
                                    batch_size=bs, **options)
            attacked = receiver_noise(images, delta)
        else:
            fn = iterative_fgsm if attack == "fgsm" else pgd
            attacked = torch.cat([fn(model, images[i:i + bs], labels[i:i + bs], eps, **options)
                                  for i in range(0, len(images), bs)])
        adv = _predict(model, attacked, bs)
    finally:
        for m, flag in modes:
            m.training = flag
    right = clean == labels
    fooled = right & (adv != labels)
    return {"attack": attack, "epsilon": eps, "samples": int(len(images)),
            "clean_accuracy": float(right.float().mean()), "attacked_accuracy": float((adv == labels).float().mean()),
            "success_rate": float(fooled.sum() / right.sum()) if bool(right.any()) else 0.0}
