"""PGD (Madry et al., 2018; ref. [26] of the robust masked VQ-VAE paper): the stronger check on eq. (4).

Projected gradient ascent on P1, eq. (4), like the iterative FGSM of eq. (7) but from a *random start* inside the
epsilon-ball, with more steps and optional restarts. Per sample, the iterate with the highest loss over all steps
and restarts is returned (when the loss is per sample; a scalar loss keeps the last iterate of the best restart).
Because that includes every iterate, PGD is never weaker than its own trajectory, and with ``random_start=False``,
``restarts=1``, ``K = 5`` and the same alpha it visits exactly the iterates of eq. (7).

The budget is the same as eq. (4b): ``||Delta s_i||_p <= epsilon`` with the paper's p = infinity by default (see
:mod:`semcom.attacks.transmitter` for what "power" means), and the result stays inside ``clamp``.
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
    check_norm,
    flat_norm,
    input_gradient,
    per_sample_loss,
    project,
)
from semcom.attacks.transmitter import DEFAULT_EPSILON, _check_range, check_budget

#: PGD's defaults: 20 steps of 2.5 * epsilon / K (Madry et al.'s ratio), one random restart.
DEFAULT_PGD_K = 20


def _random_start(x: torch.Tensor, epsilon: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniformly random point of the infinity-ball, or of the 2-ball (direction uniform, radius ~ r**(1/d))."""
    if norm == "inf":
        u = torch.rand(x.shape, generator=generator, dtype=x.real.dtype, device=x.device)
        return x + (2 * u - 1).to(x.dtype) * epsilon
    g = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # complex: both parts
    d = x[0].numel()
    r = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=generator, dtype=x.real.dtype,
                   device=x.device) ** (1.0 / d)
    return x + g / flat_norm(g, "2").clamp_min(1e-12) * r * epsilon


def pgd(model: Model, x: torch.Tensor, labels: torch.Tensor | None = None, epsilon: float = DEFAULT_EPSILON,
        K: int = DEFAULT_PGD_K, alpha: float | None = None, *, restarts: int = 1, random_start: bool = True,
        loss_fn: LossFn | None = None, norm: str = "inf", clamp: tuple[float, float] | None = (0.0, 1.0),
        seed: int | None = 0) -> torch.Tensor:
    """PGD on eq. (4): ``restarts`` runs of K projected steps ``Pi_epsilon(s' + alpha * sign(grad))`` (2-norm:
    ``alpha * grad / ||grad||``), each from a uniform random point of the epsilon-ball (``random_start``); returns,
    per sample, the visited point with the highest loss, detached. ``alpha=None`` is 2.5 * epsilon / K; K * alpha
    must be at least epsilon. ``seed`` fixes the random starts (None draws from torch's global generator)."""
    eps, k, a = check_budget(epsilon, K, alpha)
    if alpha is None and eps > 0:
        a = 2.5 * eps / k
    n_restarts = check_count(restarts, "restarts")
    key = check_norm(norm)
    rng = check_clamp(clamp)
    x = check_input(x)
    _check_range(x, rng, key)
    labels = check_labels(labels, x)
    x = x.detach()
    if eps == 0:
        return x.clone()
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))
    best, best_loss = x.clone(), None
    shape = (-1,) + (1,) * (x.ndim - 1)
    for _ in range(n_restarts):
        x_adv = project(_random_start(x, eps, key, generator), x, eps, key, rng) if random_start else x.clone()
        for step in range(k + 1):  # the loss of each iterate comes with its gradient; the last one without
            if step < k:
                grad, loss = input_gradient(model, x_adv, labels, loss_fn)
            else:
                with torch.no_grad():
                    loss = per_sample_loss(model, x_adv, labels, loss_fn).detach()
            if best_loss is None:
                best, best_loss = x_adv.clone(), loss
            elif loss.ndim == 0:  # one loss for the batch: keep the best batch
                if loss > best_loss:
                    best, best_loss = x_adv.clone(), loss
            else:
                better = loss > best_loss
                best = torch.where(better.reshape(shape), x_adv, best)
                best_loss = torch.where(better, loss, best_loss)
            if step < k:
                x_adv = project(x_adv + a * ascent_direction(grad, key), x, eps, key, rng)
    return best.detach()
