"""Sample-independent semantic noise at the receiver: Algorithm 1 and eq. (8) of the robust masked VQ-VAE paper
(Section II-B2).

An attacker transmits the same noise Delta x for every frame; the receiver gets, eq. (8),

    y = H_t x + n + H_a Delta x = x_tilde + H_a Delta x,

where x_tilde is the received signal without semantic noise and H_a (N_r x N_t) is the channel from the attacker.
Knowing only the channel statistics, the attacker draws N channel realisations H_a^(n) and collects N received
signals x_tilde^(n) with their labels z^(n); then, for each n (Algorithm 1):

* lines 3-7, a sample-dependent noise by K normalised gradient steps through the attacker's channel:
  ``d = H_a^H grad / ||H_a^H grad||_2``, ``x_tilde_(k+1) = x_tilde_k + alpha H_a d``, ``delta_(k+1) = delta_k +
  alpha d`` from ``delta_1 = 0``. The paper writes H_a^*; for ``grad`` in C^{N_r} and ``delta`` in C^{N_t} only the
  conjugate *transpose* fits, and it is what maximises the received power Re<grad, H_a d> over ||d||_2 = 1.
  For a complex signal ``grad`` is d L/d Re + i d L/d Im, the steepest-ascent direction;
* line 8, a weighted running sum ``Delta x^(n) = Delta x^(n-1) + rho delta_K / ||delta_K||_2``;
* line 9, normalisation to the budget: ``Delta x^(n) = epsilon Delta x^(n) / ||Delta x^(n)||_2``.

Here the budget epsilon is a 2-norm over the whole noise (lines 8-9 normalise by ||.||_2), in the units of the
received signal, so its meaning depends on the signal's power: :func:`scale_to_ssnr` sets it from a
signal-to-semantic-noise ratio, the x-axis of the paper's Fig. 8. ``delta_1 = 0`` is read as a reset for each
sample (the inner loop restarts at k = 1), and line 8's delta_K as the noise after the K-th step.

Without a channel (``H_a=None``, "H_a can be removed when studying the effects of non-ideal characteristics of
hardware") the noise is added to x_tilde directly and has the shape of one sample.
"""

from __future__ import annotations

import math

import torch

from semcom.attacks._common import (
    LossFn,
    Model,
    check_count,
    check_input,
    check_labels,
    check_nonnegative,
    check_positive,
    flat_norm,
    input_gradient,
)
from semcom.attacks.transmitter import DEFAULT_K, check_budget
from semcom.errors import ConfigError


def _check_channel(H_a: object, x_tilde: torch.Tensor) -> torch.Tensor | None:
    """``H_a`` as an ``(N, N_r, N_t)`` tensor matching ``x_tilde``'s batch and last (antenna) dimension."""
    if H_a is None:
        return None
    if not isinstance(H_a, torch.Tensor):
        raise ConfigError(f"H_a must be a torch tensor or None, got {type(H_a).__name__}")
    if H_a.ndim == 2:
        H_a = H_a.expand(x_tilde.shape[0], *H_a.shape)
    if H_a.ndim != 3 or H_a.shape[0] != x_tilde.shape[0]:
        raise ConfigError(f"H_a must have shape (N_r, N_t) or (N, N_r, N_t) with N = {x_tilde.shape[0]}, "
                          f"got {tuple(H_a.shape)}")
    if x_tilde.ndim < 2 or x_tilde.shape[-1] != H_a.shape[1]:
        raise ConfigError(f"x_tilde's last dimension must be the {H_a.shape[1]} receive antennas of H_a, "
                          f"got shape {tuple(x_tilde.shape)}")
    if H_a.is_complex() and not x_tilde.is_complex():
        raise ConfigError("a complex channel H_a needs a complex received signal x_tilde")
    if not torch.isfinite(H_a).all():
        raise ConfigError("H_a has NaN or infinite values")
    return H_a.to(x_tilde.dtype)


def through_channel(H_a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``H_a delta`` per sample and per slot: ``H_a`` is ``(N, N_r, N_t)``, ``delta`` is ``(N, *S, N_t)``; returns
    ``(N, *S, N_r)``."""
    return torch.einsum("nrt,n...t->n...r", H_a, delta)


def _adjoint(H_a: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``H_a^H grad`` per sample and slot: ``(N, *S, N_r)`` to ``(N, *S, N_t)``."""
    return torch.einsum("nrt,n...r->n...t", H_a.conj(), grad)


def _unit(t: torch.Tensor) -> torch.Tensor:
    """Each sample scaled to 2-norm 1 (a zero sample stays zero)."""
    n = flat_norm(t, "2")
    return torch.where(n > 0, t / n.clamp_min(torch.finfo(t.real.dtype).tiny), torch.zeros_like(t))


def universal_noise(decoder: Model, x_tilde: torch.Tensor, labels: torch.Tensor | None, epsilon: float,
                    K: int = DEFAULT_K, alpha: float | None = None, rho: float | None = None,
                    *, H_a: torch.Tensor | None = None, loss_fn: LossFn | None = None,
                    batch_size: int = 256) -> torch.Tensor:
    """Algorithm 1: the one sample-independent noise ``Delta x`` (2-norm ``epsilon``) that fools ``decoder`` on the
    received signals ``x_tilde`` (N, ...) with ``labels`` (None for a decoder that returns its loss), through the
    attacker's channel realisations ``H_a``. ``epsilon`` has no default: it is in the units of the received signal
    (:func:`scale_to_ssnr` relates it to the signal's power).

    * ``H_a=None``: ``Delta x`` has the shape of one sample of ``x_tilde`` and is added as is (:func:`receiver_noise`).
    * ``H_a`` of shape ``(N, N_r, N_t)`` (or one ``(N_r, N_t)`` for all): ``x_tilde`` is ``(N, *S, N_r)`` (S: symbol
      slots, possibly none) and ``Delta x`` is ``(*S, N_t)``, the attacker's transmitted noise.

    ``alpha=None`` is 2 * epsilon / K (the paper asks K * alpha > epsilon); ``rho=None`` is 4 * epsilon / N, which
    makes line 8's running sum weigh the N samples comparably (the first one enters at weight epsilon, each later
    one at rho before renormalisation). The decoder must treat samples independently (eval mode: gradients are
    taken on batches of ``batch_size`` for speed) and is not modified.
    """
    eps, k, a = check_budget(epsilon, K, alpha)
    x_tilde = check_input(x_tilde, "x_tilde")
    n_samples = x_tilde.shape[0]
    r = 4.0 * eps / n_samples if rho is None else check_positive(rho, "rho")
    bs = check_count(batch_size, "batch_size")
    labels = check_labels(labels, x_tilde)
    H = _check_channel(H_a, x_tilde)
    x_tilde = x_tilde.detach()
    shape = x_tilde.shape[1:] if H is None else (*x_tilde.shape[1:-1], H.shape[2])
    acc = torch.zeros(shape, dtype=x_tilde.dtype, device=x_tilde.device)
    if eps == 0:
        return acc
    for start in range(0, n_samples, bs):
        xb = x_tilde[start:start + bs]
        yb = None if labels is None else labels[start:start + bs]
        hb = None if H is None else H[start:start + bs]
        delta = torch.zeros((xb.shape[0], *shape), dtype=xb.dtype, device=xb.device)
        xk = xb.clone()
        for _ in range(k):  # lines 3-7
            grad, _ = input_gradient(decoder, xk, yb, loss_fn)
            d = _unit(grad if hb is None else _adjoint(hb, grad))
            xk = xk + a * (d if hb is None else through_channel(hb, d))
            delta = delta + a * d
        for u in _unit(delta):  # lines 8-9, in sample order
            acc = acc + r * u
            norm = torch.linalg.vector_norm(acc)
            if norm > 0:
                acc = acc * (eps / norm)
    return acc.detach()


def receiver_noise(x_tilde: torch.Tensor, delta_x: torch.Tensor, H_a: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (8): the received signal with semantic noise, ``y = x_tilde + H_a Delta x`` (``x_tilde + Delta x`` without
    a channel). ``H_a`` holds the channel realisations at test time, which the attacker did not know."""
    x_tilde = check_input(x_tilde, "x_tilde")
    H = _check_channel(H_a, x_tilde)
    delta_x = delta_x.to(device=x_tilde.device, dtype=x_tilde.dtype)
    want = x_tilde.shape[1:] if H is None else (*x_tilde.shape[1:-1], H.shape[2])
    if tuple(delta_x.shape) != tuple(want):
        raise ConfigError(f"delta_x must have shape {tuple(want)}, got {tuple(delta_x.shape)}")
    return x_tilde + (delta_x if H is None else through_channel(H, delta_x.expand(x_tilde.shape[0], *want)))


def scale_to_ssnr(delta_x: torch.Tensor, x_tilde: torch.Tensor, ssnr_db: float,
                  H_a: torch.Tensor | None = None) -> torch.Tensor:
    """``delta_x`` rescaled so that the signal-to-semantic-noise ratio at the receiver (the x-axis of Fig. 8),
    ``mean_n ||x_tilde_n||^2 / mean_n ||H_a^(n) Delta x||^2``, equals ``ssnr_db`` decibels."""
    if isinstance(ssnr_db, bool) or not isinstance(ssnr_db, (int, float)) or not math.isfinite(ssnr_db):
        raise ConfigError(f"ssnr_db must be a finite number, got {ssnr_db!r}")
    x_tilde = check_input(x_tilde, "x_tilde")
    received = receiver_noise(torch.zeros_like(x_tilde), delta_x, H_a)
    p_signal = x_tilde.abs().pow(2).reshape(x_tilde.shape[0], -1).sum(1).mean()
    p_noise = received.abs().pow(2).reshape(x_tilde.shape[0], -1).sum(1).mean()
    if p_noise <= 0:
        raise ConfigError("delta_x has no power at the receiver; it cannot be scaled to an SSNR")
    check_nonnegative(float(p_signal), "signal power")
    return delta_x * torch.sqrt(p_signal / p_noise / 10 ** (ssnr_db / 10)).to(delta_x.real.dtype)
