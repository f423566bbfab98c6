"""What every attack shares: validation of its budget at the door, and the loss it climbs.

An attack takes a *model*: any callable from an input batch to either logits (then the loss is the
cross entropy against the labels, as for the classification task of the robust masked VQ-VAE paper)
or to a loss directly (then ``labels`` may be None and ``loss_fn`` is not needed). ``loss_fn(output,
labels)`` overrides the cross entropy (e.g. the MSE against the clean image for reconstruction, where
the paper's target z_i is the image itself, Section II-B1).

Gradients are taken with :func:`torch.autograd.grad` with respect to the input only: an attack never
writes ``.grad`` of the model's parameters and never changes its train/eval mode.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F

from semcom.errors import ConfigError

Model = Callable[[torch.Tensor], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]

#: The norms an input attack can bound: the paper's default p = infinity (Section II-B1) and p = 2.
NORMS = ("inf", "2")


def check_nonnegative(value: object, name: str) -> float:
    """``value`` as a float; a one-line :class:`ConfigError` naming ``name`` if it is negative, NaN, infinite or
    not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
    return v


def check_positive(value: object, name: str) -> float:
    """``value`` as a float; a one-line :class:`ConfigError` naming ``name`` unless it is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
    return v


def check_count(value: object, name: str) -> int:
    """``value`` as an int >= 1; a one-line :class:`ConfigError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_norm(norm: object) -> str:
    """``norm`` as ``"inf"`` or ``"2"`` (accepts ``math.inf``, ``float('inf')``, ``2``)."""
    key = "inf" if isinstance(norm, numbers.Real) and not isinstance(norm, bool) and math.isinf(norm) else str(norm)
    if key not in NORMS:
        raise ConfigError(f"norm must be 'inf' or '2', got {norm!r}")
    return key


def check_clamp(clamp: object) -> tuple[float, float] | None:
    """``clamp`` as ``(low, high)`` with finite low < high, or None (no valid-range projection)."""
    if clamp is None:
        return None
    try:
        lo, hi = (float(v) for v in clamp)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"clamp must be a pair (low, high) or None, got {clamp!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"clamp must be finite with low < high, got {clamp!r}")
    return lo, hi


def check_input(x: object, name: str = "input") -> torch.Tensor:
    """``x`` as a floating (real or complex) tensor with a batch dimension, all values finite."""
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ConfigError(f"{name} must have a non-empty batch dimension, got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.is_complex()):
        raise ConfigError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ConfigError(f"{name} has NaN or infinite values")
    return x


def per_sample_loss(model: Model, x: torch.Tensor, labels: torch.Tensor | None,
                    loss_fn: LossFn | None) -> torch.Tensor:
    """The loss L(f_theta(x), z) that the attacker maximises (eq. (4a) of the robust masked VQ-VAE paper),
    per sample when the model and ``loss_fn`` allow it (shape ``(N,)``), else a scalar.

    Without ``loss_fn``: logits ``(N, classes)`` with ``labels`` give the per-sample cross entropy; a model
    whose output is already a loss (scalar or ``(N,)``) is used as is when ``labels`` is None.
    """
    out = model(x)
    if loss_fn is not None:
        loss = loss_fn(out, labels)
    elif labels is None:
        if out.ndim > 1:
            raise ConfigError(f"the model returned shape {tuple(out.shape)}, not a loss: pass labels (for logits) "
                              f"or a loss_fn")
        loss = out
    else:
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ConfigError(f"model must return logits of shape (N, classes) for labels, got {tuple(out.shape)}")
        loss = F.cross_entropy(out, labels, reduction="none")
    if loss.ndim == 0 or (loss.ndim == 1 and loss.shape[0] == x.shape[0]):
        return loss
    raise ConfigError(f"the loss must be a scalar or one value per sample, got shape {tuple(loss.shape)}")


def input_gradient(model: Model, x: torch.Tensor, labels: torch.Tensor | None,
                   loss_fn: LossFn | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad, loss)``: the gradient of the summed loss with respect to ``x`` (nabla_s L in eqs. (5)-(7)) and the
    detached per-sample (or scalar) loss. Summing, not averaging, keeps each sample's gradient independent of the
    batch size. For a complex ``x`` the gradient is PyTorch's conjugate Wirtinger one, d L/d Re + i d L/d Im,
    the direction of steepest ascent."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        loss = per_sample_loss(model, xg, labels, loss_fn)
        (grad,) = torch.autograd.grad(loss.sum(), xg)
    return grad.detach(), loss.detach()


def flat_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of ``t`` (batch first) as shape ``(N, 1, ..., 1)`` for broadcasting."""
    flat = t.reshape(t.shape[0], -1)
    n = flat.abs().amax(dim=1) if norm == "inf" else torch.linalg.vector_norm(flat, dim=1)
    return n.reshape((-1,) + (1,) * (t.ndim - 1))


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent unit step for a linearised loss (eq. (5)): sign(grad) under the infinity norm (eq. (6),
    with sign(0) = +1 as the paper defines it), grad / ||grad||_2 per sample under the 2-norm."""
    if norm == "inf":
        return torch.where(grad >= 0, 1.0, -1.0).to(grad.dtype)
    return grad / flat_norm(grad, "2").clamp_min(1e-12)


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float, norm: str,
            clamp: tuple[float, float] | None) -> torch.Tensor:
    """The projection Pi_epsilon of eq. (7): onto the ball ``||x_adv - x||_p <= epsilon`` around the clean sample,
    then into the valid input range ``clamp`` (which only shrinks the perturbation, coordinate-wise, so the
    result still lies in the ball)."""
    delta = x_adv - x
    if norm == "inf":
        delta = delta.clamp(-epsilon, epsilon)
    else:
        delta = delta * (epsilon / flat_norm(delta, "2").clamp_min(1e-12)).clamp(max=1.0)
    out = x + delta
    if clamp is not None:
        out = out.clamp(*clamp)
    return out


def check_labels(labels: object, x: torch.Tensor) -> torch.Tensor | None:
    """``labels`` as a tensor of length N (or None)."""
    if labels is None:
        return None
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.ndim < 1 or labels.shape[0] != x.shape[0]:
        raise ConfigError(f"labels must have one entry per sample ({x.shape[0]}), got shape {tuple(labels.shape)}")
    return labels.to(x.device)
