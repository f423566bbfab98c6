"""Sample-dependent semantic noise at the transmitter: FGSM (eq. (6)) and its iterative form (eq. (7)) of the
robust masked VQ-VAE paper (Section II-B1).

The attacker solves P1, eq. (4): maximise L(f_theta(s_i + Delta s_i), z_i) subject to ||Delta s_i||_p <= epsilon.

**Our reading of "power".** The paper calls epsilon the *power* of the semantic noise, but constraint (4b) bounds
its p-norm, and the paper selects p = infinity ("Unless otherwise stated, we select p = inf"). So epsilon is the
largest change of any single pixel, on images scaled to [0, 1]: epsilon = 0.016 is about 4/255. It is *not* a mean
square power; with p = inf the mean square power of the noise is at most epsilon**2, reached by eq. (6), whose
every pixel moves by exactly +-epsilon. ``norm="2"`` bounds the Euclidean norm of each sample's noise instead.

The iteration of eq. (7) starts at the clean sample, takes K steps of size alpha along sign(grad), and projects
each iterate onto the epsilon-ball around the clean sample (Pi_epsilon) and into the valid pixel range. The paper
asks for K * alpha > epsilon "to ensure the full advantage of the noise power" (equality is accepted: K = 1,
alpha = epsilon is eq. (6)); defaults are the paper's K = 5,
epsilon = 0.016 (Section V-A), and alpha = 2 * epsilon / K.

The brief of this package calls eq. (7) "Algorithm 1"; in the paper, Algorithm 1 is the receiver-side universal
noise (:mod:`semcom.attacks.universal`), which runs the same iteration inside its inner loop.
"""

from __future__ import annotations

import torch

from semcom.attacks._common import (
    LossFn,
    Model,
    ascent_direction,
    check_clamp,
    check_count,
    check_input,
    check_labels,
    check_nonnegative,
    check_norm,
    check_positive,
    input_gradient,
    project,
)
from semcom.errors import ConfigError

#: The paper's defaults (Section V-A): K = 5 iterations, semantic-noise power epsilon = 0.016.
DEFAULT_K = 5
DEFAULT_EPSILON = 0.016


def check_budget(epsilon: object, K: object, alpha: object | None) -> tuple[float, int, float]:
    """Validate ``(epsilon, K, alpha)`` of eq. (7): epsilon finite >= 0, K a positive integer, alpha finite > 0 with
    K * alpha >= epsilon (the paper asks for >, "to ensure the full advantage of the noise power"; equality is
    allowed so that K = 1, alpha = epsilon is exactly eq. (6)). ``alpha=None`` picks 2 * epsilon / K (or 1 when
    epsilon is 0)."""
    eps = check_nonnegative(epsilon, "epsilon")
    k = check_count(K, "K")
    if alpha is None:
        a = 2.0 * eps / k if eps > 0 else 1.0
    else:
        a = check_positive(alpha, "alpha")
        if k * a < eps:
            raise ConfigError(f"alpha must satisfy K * alpha >= epsilon (eq. (7)), got K={k}, alpha={a!r}, "
                              f"epsilon={eps!r}")
    return eps, k, a


def _check_range(x: torch.Tensor, clamp: tuple[float, float] | None, norm: str = "2") -> None:
    if x.is_complex() and norm == "inf":
        raise ConfigError("norm 'inf' needs a real input; use norm='2' for a complex signal")
    if clamp is not None and x.is_complex():
        raise ConfigError("clamp must be None for a complex input")
    if clamp is not None and (x.min() < clamp[0] or x.max() > clamp[1]):
        raise ConfigError(f"input values span {float(x.min()):g}..{float(x.max()):g}, outside clamp "
                          f"{clamp[0]:g}..{clamp[1]:g} (pass clamp=None for inputs that are not images in [0, 1])")


def fgsm(model: Model, x: torch.Tensor, labels: torch.Tensor | None = None, epsilon: float = DEFAULT_EPSILON, *,
         loss_fn: LossFn | None = None, norm: str = "inf",
         clamp: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """One-step FGSM, eq. (6): ``s'_i = s_i + epsilon * sign(grad_s L(f_theta(s_i), z_i))`` (with ``norm="2"``:
    ``epsilon * grad / ||grad||_2``), clipped to ``clamp``. Returns the perturbed input, detached."""
    eps = check_nonnegative(epsilon, "epsilon")
    key = check_norm(norm)
    rng = check_clamp(clamp)
    x = check_input(x)
    _check_range(x, rng, key)
    labels = check_labels(labels, x)
    if eps == 0:
        return x.detach().clone()
    grad, _ = input_gradient(model, x, labels, loss_fn)
    return project(x + eps * ascent_direction(grad, key), x, eps, key, rng).detach()


def iterative_fgsm(model: Model, x: torch.Tensor, labels: torch.Tensor | None = None,
                   epsilon: float = DEFAULT_EPSILON, K: int = DEFAULT_K, alpha: float | None = None, *,
                   loss_fn: LossFn | None = None, norm: str = "inf",
                   clamp: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """The iterative FGSM of eq. (7): K steps ``s'(k+1) = Pi_epsilon(s'(k) + alpha * sign(grad L(f(s'(k)), z)))``
    from ``s'(0) = s``, with K * alpha >= epsilon. The semantic noise is ``Delta s = result - x``; its infinity norm
    (2-norm with ``norm="2"``) is at most epsilon per sample and the result stays inside ``clamp``.

    ``model`` maps the input batch to logits (cross entropy with ``labels``) or to a loss (see
    :mod:`semcom.attacks._common`). Returns the perturbed input, detached; the model's parameters are untouched.
    """
    eps, k, a = check_budget(epsilon, K, alpha)
    key = check_norm(norm)
    rng = check_clamp(clamp)
    x = check_input(x)
    _check_range(x, rng, key)
    labels = check_labels(labels, x)
    x = x.detach()
    x_adv = x.clone()
    if eps == 0:
        return x_adv
    for _ in range(k):
        grad, _ = input_gradient(model, x_adv, labels, loss_fn)
        x_adv = project(x_adv + a * ascent_direction(grad, key), x, eps, key, rng)
    return x_adv.detach()
