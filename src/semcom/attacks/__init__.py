"""Semantic noise and adversarial training: Section II of the robust masked VQ-VAE paper.

* :mod:`semcom.attacks.transmitter`: sample-dependent noise at the transmitter, FGSM (eq. (6)) and iterative FGSM
  (eq. (7));
* :mod:`semcom.attacks.projected`: PGD with random starts and restarts, the stronger check on eq. (4);
* :mod:`semcom.attacks.universal`: the sample-independent noise at the receiver (Algorithm 1, eq. (8));
* :mod:`semcom.attacks.adversarial_training`: adversarial training with adversarial weight perturbation
  (Algorithm 2, eq. (10));
* :mod:`semcom.attacks.evaluate`: clean and attacked accuracy under a named attack (``semcom attack``).

Each attack is a function, not an ``nn.Module``: it takes a model (a callable from input to logits, or to a loss)
and returns the perturbed input. (The modules are not named after the functions, so that ``semcom.attacks.fgsm``
is always the function.) Budgets are validated at the door: a negative or non-finite epsilon, a K that is
not a positive integer, an alpha with K * alpha < epsilon are one-line :class:`semcom.errors.ConfigError`.
"""

from semcom._lazy import lazy_exports

#: Where each exported name lives: loaded on first use, so that ``import semcom.attacks`` does not import torch.
_EXPORTS = {
    "awp_step": "semcom.attacks.adversarial_training",
    "perturbed_weights": "semcom.attacks.adversarial_training",
    "weight_perturbation": "semcom.attacks.adversarial_training",
    "ATTACKS": "semcom.attacks.evaluate",
    "attack_accuracy": "semcom.attacks.evaluate",
    "DEFAULT_EPSILON": "semcom.attacks.transmitter",
    "DEFAULT_K": "semcom.attacks.transmitter",
    "check_budget": "semcom.attacks.transmitter",
    "fgsm": "semcom.attacks.transmitter",
    "iterative_fgsm": "semcom.attacks.transmitter",
    "DEFAULT_PGD_K": "semcom.attacks.projected",
    "pgd": "semcom.attacks.projected",
    "receiver_noise": "semcom.attacks.universal",
    "scale_to_ssnr": "semcom.attacks.universal",
    "through_channel": "semcom.attacks.universal",
    "universal_noise": "semcom.attacks.universal",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
