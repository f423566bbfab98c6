"""Adversarial training with adversarial weight perturbation: Algorithm 2 and problem P3, eq. (10), of the robust
masked VQ-VAE paper (Section II-C), after Wu et al., "Adversarial weight perturbation helps robust generalization"
(NeurIPS 2020, the paper's ref. [34]).

P3: ``min_theta max_nu (1/I) sum_i max_{Delta s_i} L(f_{theta+nu}(s_i + Delta s_i), z_i)`` subject to
``||Delta s_i||_p <= epsilon`` and ``||nu||_p <= gamma ||theta||_p`` (eq. (10b)). One iteration of Algorithm 2 on a
batch (:func:`awp_step`):

1. line 2: the semantic noise ``s'_i`` by an attack (eq. (7), :func:`semcom.attacks.iterative_fgsm`) with theta
   fixed and nu = 0;
2. line 3: nu by one step of forward and backward propagation that maximises L with theta and s' fixed
   (:func:`weight_perturbation`). **Our reading of the budget**, as the brief and ref. [34] state it: per layer
   (per weight tensor) and in the 2-norm, ``||nu_l||_2 <= gamma ||theta_l||_2``. The one ascent step of a
   linearised loss lands on the boundary: ``nu_l = gamma ||theta_l|| grad_l / ||grad_l||``. Like ref. [34], only
   weights with two or more dimensions are perturbed (biases and norm scales are not), unless ``perturb_1d``;
3. line 4: theta takes one optimiser step with the gradient of ``L(f_{theta+nu}(s'), z)``, taken at theta + nu and
   applied to theta (the weights are restored exactly before the step).

``gamma = 0`` is plain adversarial training (P2, eq. (9)); ``attack=None`` trains on clean samples with the weight
perturbation only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from semcom.attacks._common import check_nonnegative
from semcom.errors import ConfigError

#: ``loss_fn(outputs, targets) -> scalar`` (mean over the batch), e.g. ``torch.nn.functional.cross_entropy``.
TrainLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``model_loss(model, inputs, targets) -> scalar``: a loss that needs more than the outputs (several heads, a
#: codebook term, an SNR input); replaces ``loss_fn(model(inputs), targets)`` wherever it is given.
ModelLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``attack(model, inputs, targets) -> perturbed inputs``, e.g. ``functools.partial(iterative_fgsm, epsilon=0.016)``.
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _perturbed_parameters(model: nn.Module, perturb_1d: bool) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters()
            if p.requires_grad and (perturb_1d or p.ndim > 1)]


def _objective(model: nn.Module, loss_fn: TrainLoss | None, model_loss: ModelLoss | None, inputs: torch.Tensor,
               targets: torch.Tensor) -> torch.Tensor:
    if model_loss is not None:
        loss = model_loss(model, inputs, targets)
    elif loss_fn is not None:
        loss = loss_fn(model(inputs), targets)
    else:
        raise ConfigError("give loss_fn(outputs, targets) or model_loss(model, inputs, targets)")
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ConfigError(f"the training loss must be a scalar tensor, got {getattr(loss, 'shape', type(loss))}")
    return loss


def weight_perturbation(model: nn.Module, loss_fn: TrainLoss | None, inputs: torch.Tensor, targets: torch.Tensor,
                        gamma: float, *, perturb_1d: bool = False,
                        model_loss: ModelLoss | None = None) -> dict[str, torch.Tensor]:
    """Algorithm 2, line 3: the weight perturbation nu that maximises the linearised loss within eq. (10b)'s budget,
    per layer ``nu_l = gamma ||theta_l||_2 grad_l / ||grad_l||_2`` (zero where the gradient is zero).

    Returns ``{parameter name: nu_l}``; the model's weights and ``.grad`` are left as they were."""
    return _weight_perturbation(model, loss_fn, model_loss, inputs, targets, gamma, perturb_1d)[0]


def _weight_perturbation(model: nn.Module, loss_fn: TrainLoss | None, model_loss: ModelLoss | None,
                         inputs: torch.Tensor, targets: torch.Tensor, gamma: float,
                         perturb_1d: bool) -> tuple[dict[str, torch.Tensor], float | None]:
    """``(nu, L(f_theta(inputs), targets))``; the loss is None when gamma is 0 (nothing was computed)."""
    g = check_nonnegative(gamma, "gamma")
    params = _perturbed_parameters(model, perturb_1d)
    if not params:
        raise ConfigError("the model has no trainable weights to perturb (weights with 2+ dimensions, "
                          "or any with perturb_1d=True)")
    if g == 0:
        return {name: torch.zeros_like(p) for name, p in params}, None
    with torch.enable_grad():
        loss = _objective(model, loss_fn, model_loss, inputs, targets)
        grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    nu = {}
    for (name, p), grad in zip(params, grads):
        if grad is None:
            nu[name] = torch.zeros_like(p)
            continue
        gnorm = torch.linalg.vector_norm(grad)
        scale = g * torch.linalg.vector_norm(p.detach()) / gnorm if gnorm > 0 else torch.zeros(())
        nu[name] = (grad * scale).detach()
    return nu, float(loss.detach())


@contextmanager
def perturbed_weights(model: nn.Module, nu: dict[str, torch.Tensor]) -> Iterator[None]:
    """Within the block the model's weights are theta + nu; on exit they are theta again, bit for bit."""
    params = dict(model.named_parameters())
    unknown = sorted(set(nu) - set(params))
    if unknown:
        raise ConfigError(f"nu names parameters the model does not have: {', '.join(unknown)}")
    saved = {name: params[name].detach().clone() for name in nu}
    try:
        with torch.no_grad():
            for name, v in nu.items():
                params[name].add_(v)
        yield
    finally:
        with torch.no_grad():
            for name, theta in saved.items():
                params[name].copy_(theta)


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Every sub-module in ``training`` mode within the block, each back in its own mode on exit."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def awp_step(model: nn.Module, loss_fn: TrainLoss | None, batch: Sequence[torch.Tensor],
             optimizer: torch.optim.Optimizer, gamma: float, attack: Attack | None = None, *, perturb_1d: bool = False,
             eval_inner: bool = True, model_loss: ModelLoss | None = None) -> dict[str, float]:
    """One iteration of Algorithm 2 on ``batch = (inputs, targets)``: semantic noise by ``attack`` (line 2), weight
    perturbation nu within ``gamma ||theta_l||`` per layer (line 3), one ``optimizer`` step on theta with the
    gradient at theta + nu (line 4). Returns ``{"loss": L(f_{theta+nu}(s'), z), "loss_unperturbed":
    L(f_theta(s'), z)}`` as floats, both before the step.

    With ``eval_inner`` (the default) lines 2 and 3 run with the model in eval mode, so the attacker's forward
    passes neither draw dropout masks nor update batch-norm statistics or a codebook's EMA; line 4 runs in the
    caller's mode. ``eval_inner=False`` runs all three in the caller's mode, as ref. [34]'s code does.
    ``model_loss(model, inputs, targets)``, if given, is the loss instead of ``loss_fn(model(inputs), targets)``
    (the attack keeps its own loss, e.g. the classifier's cross entropy)."""
    g = check_nonnegative(gamma, "gamma")
    try:
        inputs, targets = batch
    except (TypeError, ValueError):
        raise ConfigError("batch must be a pair (inputs, targets)") from None
    with _mode(model, False) if eval_inner else nullcontext():
        if attack is not None:
            inputs = attack(model, inputs, targets).detach()  # line 2: theta fixed, nu = 0
        nu, loss_theta = _weight_perturbation(model, loss_fn, model_loss, inputs, targets, g, perturb_1d)  # line 3
    optimizer.zero_grad(set_to_none=True)
    with perturbed_weights(model, nu):  # line 4: gradient at theta + nu ...
        loss = _objective(model, loss_fn, model_loss, inputs, targets)
        loss.backward()
    optimizer.step()  # ... applied to theta
    value = float(loss.detach())
    return {"loss": value, "loss_unperturbed": value if loss_theta is None else loss_theta}
