"""Semantic noise and adversarial training (semcom.attacks): Section II of the robust masked VQ-VAE paper.

A small MLP trained here on scikit-learn's 8 x 8 digits (about a second) is the undefended model; closed forms for
a linear model cross-check eq. (6), Algorithm 1's channel direction and the weight perturbation of eq. (10b).
Everything random is seeded; nothing asserts wall-clock time.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from semcom.attacks import (
    awp_step,
    fgsm,
    iterative_fgsm,
    perturbed_weights,
    pgd,
    receiver_noise,
    scale_to_ssnr,
    universal_noise,
    weight_perturbation,
)
from semcom.errors import ConfigError, SemcomError

# ----------------------------------------------------------------------------- the digits and their models


@functools.lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1400], perm[1400:]
    return x[tr], y[tr], x[te], y[te]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def train(model: nn.Module, epochs: int = 30, gamma: float | None = None, attack=None) -> nn.Module:
    """Adam, batches of 100; plain steps when ``gamma`` and ``attack`` are None, else :func:`awp_step`."""
    x, y, _, _ = digits()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(order), 100):
            b = order[i:i + 100]
            if gamma is None and attack is None:
                opt.zero_grad()
                F.cross_entropy(model(x[b]), y[b]).backward()
                opt.step()
            else:
                awp_step(model, F.cross_entropy, (x[b], y[b]), opt, gamma or 0.0, attack)
    return model.eval()


@functools.lru_cache(maxsize=None)
def trained(kind: str) -> nn.Module:
    if kind == "plain":
        return train(mlp())
    if kind == "awp-clean":  # weight perturbation only: the flat-minimum effect
        return train(mlp(), gamma=0.05)
    if kind == "at-awp":  # Algorithm 2 with the paper's attack, eq. (7)
        return train(mlp(), gamma=0.01, attack=functools.partial(iterative_fgsm, epsilon=0.1))
    raise KeyError(kind)


def accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def success_rate(model, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    """Of the samples the model gets right, the fraction the attack makes it get wrong."""
    with torch.no_grad():
        right = model(x).argmax(1) == y
        fooled = right & (model(x_adv).argmax(1) != y)
    return float(fooled.sum() / right.sum())


def one_line_config_error(excinfo, *needles: str) -> None:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, (ConfigError, SemcomError)) and "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


# ----------------------------------------------------------------------------- FGSM, iterative FGSM, PGD


def test_attacks_succeed_against_the_undefended_model_and_pgd_is_strongest():
    m = trained("plain")
    _, _, x, y = digits()
    clean = accuracy(m, x, y)
    assert clean > 0.9
    acc = {}
    for eps in (0.1, 0.2):
        acc["fgsm", eps] = accuracy(m, fgsm(m, x, y, eps), y)
        acc["ifgsm", eps] = accuracy(m, iterative_fgsm(m, x, y, eps), y)  # the paper's K = 5
        acc["pgd", eps] = accuracy(m, pgd(m, x, y, eps), y)
    # substantial drops: at epsilon = 0.1 (under 2 of the digits' 16 grey levels) accuracy falls below 0.6
    assert acc["fgsm", 0.1] < 0.6 and acc["ifgsm", 0.1] < 0.5 and acc["pgd", 0.1] < 0.5
    assert success_rate(m, x, pgd(m, x, y, 0.1), y) > 0.5
    assert acc["pgd", 0.2] < 0.05 and success_rate(m, x, pgd(m, x, y, 0.2), y) > 0.95
    for eps in (0.1, 0.2):  # iterating helps, and PGD is at least as strong as both
        assert acc["ifgsm", eps] <= acc["fgsm", eps]
        assert acc["pgd", eps] <= acc["fgsm", eps] and acc["pgd", eps] <= acc["ifgsm", eps] + 0.01
    assert accuracy(m, fgsm(m, x, y, 0.0), y) == clean


def test_pgd_keeps_the_best_iterate_so_it_dominates_iterative_fgsm_per_sample():
    m = trained("plain")
    _, _, x, y = digits()
    a = 0.04
    x_ifgsm = iterative_fgsm(m, x, y, 0.1, K=5, alpha=a)
    x_pgd = pgd(m, x, y, 0.1, K=5, alpha=a, random_start=False)
    with torch.no_grad():
        l_ifgsm = F.cross_entropy(m(x_ifgsm), y, reduction="none")
        l_pgd = F.cross_entropy(m(x_pgd), y, reduction="none")
    assert (l_pgd >= l_ifgsm - 1e-6).all()


def test_fgsm_matches_the_closed_form_of_eq_6_for_a_linear_model():
    torch.manual_seed(3)
    lin = nn.Linear(64, 10)
    _, _, x, y = digits()
    x = x[:50]
    y = y[:50]
    with torch.no_grad():
        p = torch.softmax(lin(x), 1)
        grad = (p - F.one_hot(y, 10).float()) @ lin.weight  # d CE / d x
    expected = x + 0.05 * torch.where(grad >= 0, 1.0, -1.0)  # eq. (6), sign(0) = +1
    assert torch.allclose(fgsm(lin, x, y, 0.05, clamp=None), expected, atol=1e-6)
    # with the valid range, the same step clipped to [0, 1]
    assert torch.allclose(fgsm(lin, x, y, 0.05), expected.clamp(0, 1), atol=1e-6)
    # eq. (7) with K = 1 and alpha = epsilon is eq. (6)
    assert torch.allclose(iterative_fgsm(lin, x, y, 0.05, K=1, alpha=0.05), expected.clamp(0, 1), atol=1e-6)


def test_complex_signals_take_the_conjugate_wirtinger_ascent_direction():
    """For L = Re<c, x> over complex x, the 2-norm FGSM step is the optimum epsilon * c / ||c||: gain eps * ||c||."""
    g = torch.Generator().manual_seed(2)
    c = torch.complex(torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g))
    x = torch.complex(torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g))

    def gain(z):
        return (c.conj() * z).real.sum(1)

    x_adv = fgsm(gain, x, None, 0.3, norm="2", clamp=None)
    assert torch.allclose(gain(x_adv) - gain(x), 0.3 * c.abs().pow(2).sum(1).sqrt(), atol=1e-5)
    with pytest.raises(ConfigError) as e:
        fgsm(gain, x, None, 0.3, clamp=None)  # sign() has no complex meaning
    one_line_config_error(e, "norm")


def test_package_names_are_the_functions_whatever_was_imported_first():
    import importlib
    import types

    import semcom.attacks

    for module in ("transmitter", "projected", "universal", "adversarial_training", "evaluate"):
        importlib.import_module(f"semcom.attacks.{module}")
    for name in semcom.attacks.__all__:
        assert not isinstance(getattr(semcom.attacks, name), types.ModuleType), name


def test_attacks_leave_the_model_alone_and_accept_a_loss_model():
    m = mlp().train()
    before = [p.detach().clone() for p in m.parameters()]
    _, _, x, y = digits()
    for attack in (fgsm, iterative_fgsm, pgd):
        attack(m, x[:20], y[:20], 0.05)
    assert m.training and all(p.grad is None for p in m.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    # a model that returns a loss (reconstruction-like: distance to a target image), no labels
    target = x[:20].flip(0)

    def distance(inp):
        return ((inp - target) ** 2).sum(1)

    x_adv = iterative_fgsm(distance, x[:20], epsilon=0.05)
    assert (distance(x_adv) > distance(x[:20])).all()
    # a custom loss_fn on logits
    x_adv = pgd(m, x[:20], y[:20], 0.05, loss_fn=lambda out, t: F.cross_entropy(out, t))
    assert x_adv.shape == x[:20].shape


@settings(max_examples=40, deadline=None)
@given(eps=st.one_of(st.just(0.0), st.floats(1e-4, 0.5)), K=st.integers(1, 6),
       ratio=st.floats(1.01, 4.0), norm=st.sampled_from(["inf", "2"]), seed=st.integers(0, 2**16),
       which=st.sampled_from(["fgsm", "ifgsm", "pgd"]), clamp=st.booleans())
def test_perturbation_respects_its_budget(eps, K, ratio, norm, seed, which, clamp):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(12, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3, 12, generator=g))
    x = torch.rand(7, 12, generator=g)
    y = torch.randint(0, 3, (7,), generator=g)
    alpha = ratio * eps / K if eps > 0 else 0.1
    rng = (0.0, 1.0) if clamp else None
    if which == "fgsm":
        x_adv = fgsm(lin, x, y, eps, norm=norm, clamp=rng)
    elif which == "ifgsm":
        x_adv = iterative_fgsm(lin, x, y, eps, K, alpha, norm=norm, clamp=rng)
    else:
        x_adv = pgd(lin, x, y, eps, K, alpha, norm=norm, clamp=rng, restarts=2, seed=seed)
    delta = (x_adv - x).reshape(7, -1)
    size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-5) + 1e-6).all()
    if clamp:
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    if which == "fgsm" and norm == "inf" and not clamp:  # eq. (6) uses the whole budget on every pixel
        assert torch.allclose(delta.abs(), torch.full_like(delta, eps), atol=1e-6)


@pytest.mark.parametrize("kwargs, needle", [
    ({"epsilon": -0.01}, "epsilon"), ({"epsilon": float("nan")}, "epsilon"), ({"epsilon": float("inf")}, "epsilon"),
    ({"epsilon": "0.1"}, "epsilon"), ({"K": 0}, "K"), ({"K": 2.5}, "K"), ({"K": True}, "K"),
    ({"alpha": 0.0}, "alpha"), ({"alpha": float("nan")}, "alpha"), ({"alpha": 0.002}, "K * alpha >= epsilon"),
    ({"norm": "1"}, "norm"), ({"clamp": (1.0, 0.0)}, "clamp"),
])
def test_bad_budgets_are_one_line_errors(kwargs, needle):
    m = mlp()
    _, _, x, y = digits()
    args = {"epsilon": 0.016, "K": 5} | kwargs
    for attack in (iterative_fgsm, pgd):
        with pytest.raises(ConfigError) as e:
            attack(m, x[:4], y[:4], **args)
        one_line_config_error(e, needle)


def test_inputs_outside_the_valid_range_are_refused_unless_clamp_is_none():
    m = mlp()
    _, _, x, y = digits()
    with pytest.raises(ConfigError) as e:
        fgsm(m, x[:4] * 3 - 1, y[:4], 0.1)
    one_line_config_error(e, "clamp")
    assert fgsm(m, x[:4] * 3 - 1, y[:4], 0.1, clamp=None).shape == (4, 64)


# ----------------------------------------------------------------------------- universal noise at the receiver


def test_universal_noise_is_one_tensor_and_beats_random_noise_of_the_same_power():
    m = trained("plain")
    x_tr, y_tr, x, y = digits()
    eps = 1.2  # 2-norm over the 64 pixels, about 0.15 per pixel
    u = universal_noise(m, x_tr, y_tr, epsilon=eps)  # computed on the training images
    assert u.shape == (64,) and math.isclose(float(u.norm()), eps, rel_tol=1e-5)
    g = torch.Generator().manual_seed(3)
    randoms = [r / r.norm() * eps for r in torch.randn(5, 64, generator=g)]
    acc_random = sum(accuracy(m, receiver_noise(x, r), y) for r in randoms) / len(randoms)
    acc_universal = accuracy(m, receiver_noise(x, u), y)  # on images it never saw
    assert acc_universal < acc_random - 0.15, (acc_universal, acc_random)
    assert torch.equal(receiver_noise(x, u) - x, (x + u) - x)  # the same noise on every sample


def test_universal_noise_through_the_attackers_channel():
    m = trained("plain")
    x_tr, y_tr, x, y = digits()

    def decoder(received):  # 16 symbol slots x 4 receive antennas -> the 64 pixels
        return m(received.reshape(received.shape[0], 64))

    g = torch.Generator().manual_seed(7)
    H = torch.randn(4, 8, generator=g) / math.sqrt(8)  # N_r = 4, N_t = 8 (the paper's 8 x 4 link, reversed)
    eps = 1.2
    u = universal_noise(decoder, x_tr.reshape(-1, 16, 4), y_tr, epsilon=eps, H_a=H)
    assert u.shape == (16, 8) and math.isclose(float(u.norm()), eps, rel_tol=1e-5)
    r = torch.randn(16, 8, generator=g)
    r = r / r.norm() * eps
    H_test = H.expand(len(x), 4, 8)
    acc_u = accuracy(decoder, receiver_noise(x.reshape(-1, 16, 4), u, H_test), y)
    acc_r = accuracy(decoder, receiver_noise(x.reshape(-1, 16, 4), r, H_test), y)
    assert acc_u < acc_r - 0.15, (acc_u, acc_r)


def test_algorithm_1_direction_is_the_conjugate_transpose_closed_form():
    """For a linear loss L = Re<c, y> and one sample, lines 4-9 give Delta x = epsilon H^H c / ||H^H c||, the unit
    direction that maximises the received Re<c, H Delta x>."""
    g = torch.Generator().manual_seed(0)
    H = torch.complex(torch.randn(1, 4, 8, generator=g), torch.randn(1, 4, 8, generator=g))
    c = torch.complex(torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g))
    x_tilde = torch.complex(torch.randn(1, 3, 4, generator=g), torch.randn(1, 3, 4, generator=g))

    def loss(received):
        return (c.conj() * received).real.sum(dim=(1, 2))

    u = universal_noise(loss, x_tilde, None, 0.5, K=3, H_a=H)
    direction = torch.einsum("rt,sr->st", H[0].conj(), c)
    assert torch.allclose(u, 0.5 * direction / direction.norm(), atol=1e-5)
    gain = float(loss(receiver_noise(x_tilde, u, H)) - loss(x_tilde))
    for _ in range(20):
        v = torch.complex(torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g))
        v = 0.5 * v / v.norm()
        assert float(loss(receiver_noise(x_tilde, v, H)) - loss(x_tilde)) <= gain + 1e-5


def test_scale_to_ssnr_and_universal_validation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 5, 4, generator=g)
    H = torch.randn(10, 4, 8, generator=g)
    d = torch.randn(5, 8, generator=g)
    scaled = scale_to_ssnr(d, x, 6.0, H)
    noise = receiver_noise(torch.zeros_like(x), scaled, H)
    ratio = x.pow(2).sum(dim=(1, 2)).mean() / noise.pow(2).sum(dim=(1, 2)).mean()
    assert math.isclose(10 * math.log10(float(ratio)), 6.0, abs_tol=1e-4)
    m = mlp()
    x_tr, y_tr, _, _ = digits()
    for kwargs, needle in (({"epsilon": -1.0}, "epsilon"), ({"rho": 0.0}, "rho"), ({"K": 0}, "K"),
                           ({"H_a": torch.randn(3, 5)}, "H_a")):
        with pytest.raises(ConfigError) as e:
            universal_noise(m, x_tr[:8], y_tr[:8], **({"epsilon": 1.0} | kwargs))
        one_line_config_error(e, needle)
    with pytest.raises(ConfigError) as e:
        receiver_noise(x, torch.zeros(5, 7), H)
    one_line_config_error(e, "delta_x")


# ----------------------------------------------------------------------------- adversarial weight perturbation


def test_weight_perturbation_matches_the_closed_form_for_a_linear_model():
    torch.manual_seed(2)
    lin = nn.Linear(64, 10)
    x, y, _, _ = digits()
    x, y = x[:200], y[:200]
    with torch.no_grad():
        p = torch.softmax(lin(x), 1) - F.one_hot(y, 10).float()
        grad_w = p.T @ x / len(x)  # d mean CE / d W
        grad_b = p.mean(0)
    gamma = 0.02
    nu = weight_perturbation(lin, F.cross_entropy, x, y, gamma)
    assert set(nu) == {"weight"}  # biases are not perturbed (as in AWP)
    expected = gamma * lin.weight.detach().norm() * grad_w / grad_w.norm()
    assert torch.allclose(nu["weight"], expected, atol=1e-6)
    assert math.isclose(float(nu["weight"].norm()), gamma * float(lin.weight.detach().norm()), rel_tol=1e-5)
    nu = weight_perturbation(lin, F.cross_entropy, x, y, gamma, perturb_1d=True)
    assert torch.allclose(nu["bias"], gamma * lin.bias.detach().norm() * grad_b / grad_b.norm(), atol=1e-6)
    assert all(q.grad is None for q in lin.parameters())


def test_awp_step_is_sgd_with_the_gradient_taken_at_theta_plus_nu():
    torch.manual_seed(4)
    lin = nn.Linear(64, 10)
    x, y, _, _ = digits()
    x, y = x[:100], y[:100]
    theta = {k: v.detach().clone() for k, v in lin.named_parameters()}
    gamma, lr = 0.05, 0.5
    nu = weight_perturbation(lin, F.cross_entropy, x, y, gamma)
    w = (theta["weight"] + nu["weight"]).requires_grad_(True)
    b = theta["bias"].clone().requires_grad_(True)
    F.cross_entropy(x @ w.T + b, y).backward()
    out = awp_step(lin, F.cross_entropy, (x, y), torch.optim.SGD(lin.parameters(), lr), gamma)
    assert torch.allclose(lin.weight, theta["weight"] - lr * w.grad, atol=1e-6)
    assert torch.allclose(lin.bias, theta["bias"] - lr * b.grad, atol=1e-6)
    assert out["loss"] > out["loss_unperturbed"]  # nu climbs the loss
    # the same step through model_loss(model, inputs, targets), the form a multi-term loss takes
    twin = nn.Linear(64, 10)
    with torch.no_grad():
        twin.weight.copy_(theta["weight"])
        twin.bias.copy_(theta["bias"])
    awp_step(twin, None, (x, y), torch.optim.SGD(twin.parameters(), lr), gamma,
             model_loss=lambda model, inputs, targets: F.cross_entropy(model(inputs), targets))
    assert torch.equal(twin.weight, lin.weight) and torch.equal(twin.bias, lin.bias)
    # gamma = 0 and no attack is a plain SGD step
    plain = nn.Linear(64, 10)
    plain.load_state_dict(lin.state_dict())
    awp_step(lin, F.cross_entropy, (x, y), torch.optim.SGD(lin.parameters(), lr), 0.0)
    opt = torch.optim.SGD(plain.parameters(), lr)
    F.cross_entropy(plain(x), y).backward()
    opt.step()
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(lin.parameters(), plain.parameters()))


def test_perturbed_weights_restores_theta_bit_for_bit_even_on_error():
    m = mlp()
    theta = [p.detach().clone() for p in m.parameters()]
    nu = {name: torch.full_like(p, 0.1) for name, p in m.named_parameters()}
    with pytest.raises(RuntimeError):
        with perturbed_weights(m, nu):
            assert not torch.equal(next(m.parameters()), theta[0])
            raise RuntimeError("boom")
    assert all(torch.equal(a, b) for a, b in zip(theta, m.parameters()))
    with pytest.raises(ConfigError) as e:
        awp_step(m, F.cross_entropy, (torch.zeros(2, 64), torch.zeros(2, dtype=torch.int64)),
                 torch.optim.SGD(m.parameters(), 0.1), float("nan"))
    one_line_config_error(e, "gamma")


def test_awp_step_runs_the_attacker_in_eval_mode_and_restores_modes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
    model.train()
    model[3].eval()  # a mixed mode survives the step
    x, y, _, _ = digits()
    attack = functools.partial(iterative_fgsm, epsilon=0.05)
    awp_step(model, F.cross_entropy, (x[:64], y[:64]), torch.optim.SGD(model.parameters(), 0.1), 0.01, attack)
    assert int(model[1].num_batches_tracked) == 1  # only line 4's forward pass updated the batch-norm statistics
    assert [m.training for m in model] == [True, True, True, False, True]
    awp_step(model, F.cross_entropy, (x[:64], y[:64]), torch.optim.SGD(model.parameters(), 0.1), 0.01, attack,
             eval_inner=False)
    assert int(model[1].num_batches_tracked) == 1 + 5 + 1 + 1  # attack (K = 5), nu, and line 4
    assert [m.training for m in model] == [True, True, True, False, True]


def sharpness(model: nn.Module, rel: float, draws: int = 20) -> tuple[float, float]:
    """Training-loss increase under weight perturbations of size ``rel * ||theta_l||`` per layer: mean over random
    directions, and along the worst (one-step adversarial) direction."""
    x, y, _, _ = digits()
    with torch.no_grad():
        base = float(F.cross_entropy(model(x), y))
    g = torch.Generator().manual_seed(5)
    increases = []
    for _ in range(draws):
        nu = {}
        for name, p in model.named_parameters():
            if p.ndim > 1:
                r = torch.randn(p.shape, generator=g)
                nu[name] = r / r.norm() * p.detach().norm() * rel
        with perturbed_weights(model, nu), torch.no_grad():
            increases.append(float(F.cross_entropy(model(x), y)) - base)
    with perturbed_weights(model, weight_perturbation(model, F.cross_entropy, x, y, rel)), torch.no_grad():
        worst = float(F.cross_entropy(model(x), y)) - base
    return sum(increases) / draws, worst


def test_awp_finds_flatter_minima():
    """Ref. [34]'s claim: training against the weight perturbation flattens the loss landscape in weight space."""
    plain, awp = trained("plain"), trained("awp-clean")
    _, _, x, y = digits()
    assert accuracy(awp, x, y) > 0.9
    random_plain, worst_plain = sharpness(plain, 0.1)
    random_awp, worst_awp = sharpness(awp, 0.1)
    assert worst_awp < 0.5 * worst_plain, (worst_awp, worst_plain)
    random_plain, _ = sharpness(plain, 0.2)
    random_awp, _ = sharpness(awp, 0.2)
    assert random_awp < random_plain, (random_awp, random_plain)


def test_adversarially_trained_model_keeps_its_accuracy_under_attacks():
    plain, robust = trained("plain"), trained("at-awp")
    _, _, x, y = digits()
    assert accuracy(robust, x, y) > 0.9  # little cost on clean digits
    for attack in (fgsm, pgd):  # trained with eq. (7); PGD with random starts is an attack it never saw
        acc_plain = accuracy(plain, attack(plain, x, y, 0.1), y)
        acc_robust = accuracy(robust, attack(robust, x, y, 0.1), y)
        assert acc_robust > acc_plain + 0.25, (attack.__name__, acc_robust, acc_plain)


# ----------------------------------------------------------------------------- the report behind `semcom attack`


def test_attack_accuracy_reports_clean_and_attacked_accuracy():
    from semcom.attacks import ATTACKS, attack_accuracy

    m = trained("plain").train()  # put back in train mode afterwards
    x_tr, y_tr, x, y = digits()
    rows = {a: attack_accuracy(m, x, y, a, 1.2 if a == "universal" else 0.1, batch_size=100,
                               **({"fit": (x_tr, y_tr)} if a == "universal" else {})) for a in ATTACKS}
    assert m.training
    m.eval()
    for name, row in rows.items():
        assert row["attack"] == name and row["samples"] == len(x)
        assert row["clean_accuracy"] == accuracy(m, x, y) > 0.9
        assert row["attacked_accuracy"] < row["clean_accuracy"] - 0.25 and row["success_rate"] > 0.25
    assert rows["pgd"]["attacked_accuracy"] <= rows["fgsm"]["attacked_accuracy"] + 0.01
    for kwargs, needle in (({"attack": "deepfool"}, "attack"), ({"epsilon": -0.1}, "epsilon"),
                           ({"epsilon": float("inf")}, "epsilon")):
        with pytest.raises(ConfigError) as e:
            attack_accuracy(m, x, y, **({"attack": "fgsm", "epsilon": 0.1} | kwargs))
        one_line_config_error(e, needle)
