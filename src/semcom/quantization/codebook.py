"""The grounded codebook paper's own losses and theory, written by hand (issue 10, first slice).

Equation numbers follow ``papers/README.md`` ("Codebook paper: the equations that were lost"):

* eqs. (1)-(4), nearest-codeword quantisation: :func:`nearest_indices`, :func:`squared_distances`;
* eq. (5), the VQ-VAE quantisation loss: :func:`quantization_loss`;
* eqs. (10)-(11), the empirical index entropy with soft assignments: :func:`soft_assignments`,
  :func:`index_probabilities`, :func:`index_entropy`; (12)-(13), the entropy-regularised loss:
  :func:`entropy_regularised_loss`;
* eq. (15), the error-weight distribution of an ``n``-bit label over a BSC: :func:`error_weight_distribution`;
  eq. (16), the index error probability: :func:`index_error_probability`;
* eq. (17), P(k | i): exact from the Hamming distance of the natural binary labels
  (:func:`binary_labels`, :func:`hamming_matrix`, :func:`transition_matrix`, :func:`bsc_mix`) and under
  random labelling (:func:`transition_matrix_random_labelling`);
* eqs. (18)-(19), channel-induced distortion: :func:`channel_distortion`, cross-checked by
  :func:`monte_carlo_channel_distortion`; eq. (20): :func:`quantization_distortion`, :func:`total_distortion`;
* eq. (21), the optimal codebook size: :func:`optimal_codebook_size`, :func:`rate_bits_per_image`, with the
  bit-flip probability ``p`` from modulation and SNR: :func:`bsc_flip_probability`;
* eq. (22), the channel-aware distortion loss: :func:`channel_aware_loss`; eq. (23), the total codebook loss:
  :func:`total_codebook_loss` and the module :class:`CodebookLoss`.

Conventions (the readings taken where the paper is silent):

* Every squared norm is summed over the ``D`` feature dimensions and averaged over the vectors of the batch
  (``z`` of shape ``[..., D]`` is a batch of ``prod(...)`` vectors), so (5), (20) and (22) are on one scale.
  ``torch.nn.functional.mse_loss`` would be ``1 / D`` of these.
* Index ``i`` (0-based) is sent as its natural binary label, most significant bit first, ``n = ceil(log2 J)``
  bits. With that labelling the exact (17) is the Kronecker product of ``n`` copies of the one-bit BSC
  ``[[1 - p, p], [p, 1 - p]]``, which :func:`bsc_mix` applies in ``O(J n)`` per column.
* (22) sums over *every* ``k``, including ``k = i(z)`` (weight ``(1 - p)^n``), with no stop-gradient: the loss
  is differentiable with respect to ``z`` and to the codebook; ``i(z)`` itself is a hard argmin.
* (18)-(19) take the index probabilities ``p_i`` as given (the empirical frequencies of the sent indices in
  :func:`total_distortion`). ``D = D_q + D_ch`` (20) is exact when every codeword is the centroid of its
  Voronoi cell (the cross term ``2 sum_k P(k|i) (z - e_i).(e_i - e_k)`` then averages to zero); the expected
  distortion of the codeword that arrives is in general the batch mean of (22).
* The random-labelling form of (17) is exactly the exact form averaged over uniformly random relabellings of
  the indices (every off-diagonal entry then averages to ``P_e / (J - 1)``).
* ``snr_db`` in :func:`bsc_flip_probability` is ``E_s / N_0`` per complex symbol, as everywhere in
  :mod:`semcom.phy`; the Rayleigh channel is flat, with coherent detection after perfect-CSI equalisation.

Arguments are validated at the door: ``J`` a power of two in ``16..4096`` (:data:`J_MIN`, :data:`J_MAX`), ``p``
in ``[0, 0.5]``; a wrong value raises :class:`semcom.errors.ConfigError` with a one-line message naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from scipy.special import comb
from torch import nn

from semcom.errors import ConfigError

__all__ = [
    "J_MIN", "J_MAX", "CodebookLoss", "MonteCarloDistortion", "binary_labels", "bsc_flip_probability", "bsc_mix",
    "channel_aware_loss", "channel_distortion", "check_codebook_size", "check_flip_probability",
    "entropy_regularised_loss", "error_weight_distribution", "hamming_matrix", "hard_index_entropy",
    "index_bits", "index_entropy", "index_error_probability", "index_probabilities", "monte_carlo_channel_distortion",
    "nearest_indices", "optimal_codebook_size", "quantization_distortion", "quantization_loss",
    "rate_bits_per_image", "soft_assignments", "squared_distances", "total_codebook_loss", "total_distortion",
    "transition_matrix", "transition_matrix_random_labelling",
]

#: Supported codebook sizes: powers of two from ``J_MIN`` to ``J_MAX`` (issue 10: "J from 16 to 4,096").
J_MIN = 16
J_MAX = 4096

_MODULATION_ALIASES = {
    "bpsk": "bpsk", "qpsk": "qpsk", "4qam": "qpsk", "qam4": "qpsk",
    "qam16": "qam16", "16qam": "qam16", "qam64": "qam64", "64qam": "qam64",
}
_ORDERS = {"bpsk": 2, "qpsk": 4, "qam16": 16, "qam64": 64}


# =========================================================================== validation


def check_codebook_size(J, name: str = "J") -> int:
    """``J`` as an int, or :class:`ConfigError` unless it is a power of two in ``J_MIN..J_MAX``."""
    if isinstance(J, bool) or not isinstance(J, (int, np.integer)):
        raise ConfigError(f"invalid {name}: codebook size must be an integer power of two in {J_MIN}..{J_MAX}, "
                          f"got {name}={J!r}")
    J = int(J)
    if J < J_MIN or J > J_MAX or J & (J - 1):
        raise ConfigError(f"invalid {name}: codebook size must be a power of two in {J_MIN}..{J_MAX}, got {name}={J}")
    return J


def check_flip_probability(p, name: str = "p") -> float:
    """``p`` as a float, or :class:`ConfigError` unless it is a number in ``[0, 0.5]``."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise ConfigError(f"invalid {name}: bit-flip probability must be a number in [0, 0.5], got {name}={p!r}")
    p = float(p)
    if not 0.0 <= p <= 0.5:  # also rejects NaN
        raise ConfigError(f"invalid {name}: bit-flip probability must be in [0, 0.5], got {name}={p!r}")
    return p


def _check_bits(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= 64:
        raise ConfigError(f"invalid n: number of index bits must be an integer in 1..64, got n={n!r}")
    return int(n)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"invalid {name}: must be a positive number, got {name}={value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigError(f"invalid {name}: must be a positive finite number, got {name}={value!r}")
    return value


def _check_nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"invalid {name}: must be a non-negative number, got {name}={value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ConfigError(f"invalid {name}: must be a non-negative finite number, got {name}={value!r}")
    return value


def _check_pair(z: torch.Tensor, codebook: torch.Tensor) -> None:
    if codebook.dim() != 2:
        raise ConfigError(f"invalid codebook: expected shape [J, D], got {tuple(codebook.shape)}")
    if z.dim() < 1 or z.shape[-1] != codebook.shape[1]:
        raise ConfigError(f"invalid z: last dimension must be D={codebook.shape[1]}, got shape {tuple(z.shape)}")


def index_bits(J: int) -> int:
    """Bits per index, ``n = ceil(log2 J)`` (Section III-C)."""
    return int(math.ceil(math.log2(check_codebook_size(J))))


# =========================================================================== eqs. (1)-(5)


def squared_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``||z - e_j||^2`` for every vector of ``z`` (``[..., D]``) and codeword ``e_j`` (``codebook``, ``[J, D]``).

    Returns ``[..., J]``; expanded as ``||z||^2 - 2 z.e_j + ||e_j||^2`` (clamped at 0) so memory is ``O(N J)``,
    differentiable with respect to both arguments. The distance of eqs. (1), (11) and (22)."""
    _check_pair(z, codebook)
    z2 = z.pow(2).sum(-1, keepdim=True)
    e2 = codebook.pow(2).sum(-1)
    return (z2 - 2.0 * z @ codebook.transpose(0, 1) + e2).clamp_min(0.0)


def nearest_indices(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Eqs. (1)-(4): ``i(z) = argmin_j ||z - e_j||^2``, the Voronoi cell each vector of ``z`` falls in.

    ``z`` is ``[..., D]``, ``codebook`` ``[J, D]``; returns int64 indices of shape ``[...]`` (eq. 2 is this
    applied to every vector of the encoder's grid). Ties go to the smallest index. No gradient."""
    with torch.no_grad():
        return squared_distances(z, codebook).argmin(dim=-1)


def quantization_loss(z: torch.Tensor, e_i: torch.Tensor, beta: float = 0.25) -> torch.Tensor:
    """Eq. (5): ``L_q = ||sg[z] - e_i||^2 + beta ||z - sg[e_i]||^2``, averaged over the vectors.

    ``e_i`` is the selected codeword for each vector of ``z`` (``codebook[nearest_indices(z, codebook)]``),
    same shape as ``z``; ``sg`` is ``.detach()``, so the first (codebook) term moves only the codewords and the
    second (commitment) term only the encoder output."""
    beta = _check_nonnegative(beta, "beta")
    if e_i.shape != z.shape:
        raise ConfigError(f"invalid e_i: expected the shape of z {tuple(z.shape)}, got {tuple(e_i.shape)}")
    codebook_term = (z.detach() - e_i).pow(2).sum(-1)
    commitment_term = (z - e_i.detach()).pow(2).sum(-1)
    return (codebook_term + beta * commitment_term).mean()


# =========================================================================== eqs. (10)-(13)


def soft_assignments(z: torch.Tensor, codebook: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Eq. (11): ``q_bj = softmax_j(-||z_b - e_j||^2 / T)``, shape ``[..., J]``; each row sums to 1.

    As ``T -> 0`` this tends to the one-hot of :func:`nearest_indices`, as ``T -> inf`` to ``1 / J``."""
    temperature = _check_positive(temperature, "temperature")
    return torch.softmax(-squared_distances(z, codebook) / temperature, dim=-1)


def index_probabilities(z: torch.Tensor, codebook: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Eq. (11): the empirical index distribution ``p_j = (1/B) sum_b q_bj`` over all vectors of ``z``, ``[J]``."""
    q = soft_assignments(z, codebook, temperature)
    return q.reshape(-1, q.shape[-1]).mean(dim=0)


def _entropy(probs: torch.Tensor, unit: str) -> torch.Tensor:
    if unit not in ("nats", "bits"):
        raise ConfigError(f"invalid unit: must be 'nats' or 'bits', got unit={unit!r}")
    tiny = torch.finfo(probs.dtype).tiny
    h = -(probs * probs.clamp_min(tiny).log()).sum(-1)  # 0 log 0 = 0, with finite gradients
    return h / math.log(2.0) if unit == "bits" else h


def index_entropy(z: torch.Tensor, codebook: torch.Tensor, temperature: float = 1.0, *,
                  unit: str = "nats") -> torch.Tensor:
    """Eq. (10): ``H = -sum_j p_j log p_j`` of the soft empirical index distribution of eq. (11).

    ``unit`` is ``"nats"`` (natural log, the paper's) or ``"bits"``; at most ``log J`` (uniform ``p_j``),
    differentiable with respect to ``z`` and the codebook."""
    return _entropy(index_probabilities(z, codebook, temperature), unit)


def hard_index_entropy(indices: torch.Tensor, J: int, *, unit: str = "bits") -> float:
    """The entropy of the histogram of hard ``indices`` over ``J`` codewords, ``H(i)`` of eqs. (9)/(12)
    (a trained codebook's ``index_entropy_bits``); not differentiable."""
    J = check_codebook_size(J)
    counts = torch.bincount(indices.reshape(-1).long(), minlength=J).double()
    if counts.numel() > J:
        raise ConfigError(f"invalid indices: values must be in 0..{J - 1}, got max {int(indices.max())}")
    return float(_entropy(counts / counts.sum(), unit))


def entropy_regularised_loss(z: torch.Tensor, codebook: torch.Tensor, *, beta: float = 0.25, lambda_h: float = 0.1,
                             temperature: float = 1.0) -> torch.Tensor:
    """Eqs. (12)-(13): ``L_q - lambda_H * H``, eq. (5) minus the weighted soft index entropy of eq. (10).

    ``I(z; i) = H(i)`` for a deterministic quantiser (12), so maximising ``H`` drives ``p_j -> 1/J`` (14)."""
    lambda_h = _check_nonnegative(lambda_h, "lambda_h")
    e_i = codebook[nearest_indices(z, codebook)]
    return quantization_loss(z, e_i, beta) - lambda_h * index_entropy(z, codebook, temperature)


# =========================================================================== eqs. (15)-(17)


def binary_labels(J: int) -> torch.Tensor:
    """The natural binary label of each index, ``[J, n]`` int64 0/1, most significant bit first,
    ``n = ceil(log2 J)`` (Section III-C: index ``i`` is sent as an ``n``-bit sequence)."""
    n = index_bits(J)
    shifts = torch.arange(n - 1, -1, -1)
    return (torch.arange(J)[:, None] >> shifts) & 1


def _labels_to_indices(bits: torch.Tensor) -> torch.Tensor:
    n = bits.shape[-1]
    weights = 2 ** torch.arange(n - 1, -1, -1, device=bits.device)
    return (bits.long() * weights).sum(-1)


def hamming_matrix(J: int) -> torch.Tensor:
    """``d_H(i, k)``, the Hamming distance between the binary labels of indices ``i`` and ``k``, ``[J, J]`` int64."""
    labels = binary_labels(J)
    return (labels[:, None, :] != labels[None, :, :]).sum(-1)


def transition_matrix(J: int, p: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Eq. (17), exact: ``P(k | i) = p^dH(i,k) (1 - p)^(n - dH(i,k))``, row ``i`` sent, column ``k`` received.

    Each row sums to 1; the diagonal is ``(1 - p)^n = 1 - P_e`` (eq. 16)."""
    p = check_flip_probability(p)
    n = index_bits(J)
    d = hamming_matrix(J).to(torch.float64)
    return (torch.tensor(p, dtype=torch.float64).pow(d) * torch.tensor(1.0 - p, dtype=torch.float64).pow(n - d)).to(
        dtype)


def transition_matrix_random_labelling(J: int, p: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Eq. (17), random labelling: ``P(i | i) = 1 - P_e`` and ``P(k | i) = P_e / (J - 1)`` for ``k != i``.

    This is the exact matrix averaged over uniformly random relabellings of the indices."""
    p = check_flip_probability(p)
    J = check_codebook_size(J)
    pe = index_error_probability(index_bits(J), p)
    m = torch.full((J, J), pe / (J - 1), dtype=torch.float64)
    m.fill_diagonal_(1.0 - pe)
    return m.to(dtype)


def bsc_mix(values: torch.Tensor, p: float) -> torch.Tensor:
    """``P @ values`` for the exact ``P`` of eq. (17), without forming ``P``: ``sum_k P(k|i) values[k]`` for each ``i``.

    ``values`` is ``[J, ...]``. With natural binary labels ``P`` is the Kronecker product of ``n`` one-bit BSCs
    ``[[1 - p, p], [p, 1 - p]]``, so each bit is mixed in turn (``O(J n)`` per column); differentiable."""
    p = check_flip_probability(p)
    J = values.shape[0]
    n = index_bits(J)
    rest = values.shape[1:]
    x = values.reshape((2,) * n + (-1,))
    for axis in range(n):
        x = (1.0 - p) * x + p * x.flip(axis)
    return x.reshape((J,) + rest)


def index_error_probability(n: int, p: float) -> float:
    """Eq. (16): ``P_e = 1 - (1 - p)^n``, the probability that an ``n``-bit index arrives wrong over a BSC(p)."""
    n = _check_bits(n)
    p = check_flip_probability(p)
    return -math.expm1(n * math.log1p(-p))


def error_weight_distribution(n: int, p: float) -> torch.Tensor:
    """Eq. (15): ``P(w) = C(n, w) p^w (1 - p)^(n - w)`` for ``w = 0..n`` bit errors in an ``n``-bit label,
    ``[n + 1]`` float64 (the binomial pmf)."""
    n = _check_bits(n)
    p = check_flip_probability(p)
    w = np.arange(n + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmf = comb(n, w) * np.power(p, w) * np.power(1.0 - p, n - w)
    return torch.from_numpy(np.asarray(pmf, dtype=np.float64))


# =========================================================================== eqs. (22)-(23)


def channel_aware_loss(z: torch.Tensor, codebook: torch.Tensor, p: float, *, exact: bool = True) -> torch.Tensor:
    """Eq. (22): ``L_ch = sum_k P(k | i(z)) ||z - e_k||^2``, averaged over the vectors of ``z``.

    The expected squared distance between ``z`` and the codeword that may arrive when ``i(z)`` is sent over a
    BSC(p); ``P`` is the exact eq. (17) (``exact=True``, via :func:`bsc_mix`) or its random-labelling form.
    Computed as ``||z||^2 - 2 z.(P E)_i + (P ||e||^2)_i`` (the rows of ``P`` sum to 1); differentiable with
    respect to ``z`` and the codebook (no stop-gradient), the hard ``i(z)`` excepted."""
    _check_pair(z, codebook)
    p = check_flip_probability(p)
    J = check_codebook_size(codebook.shape[0], "J")
    idx = nearest_indices(z, codebook).reshape(-1)
    flat = z.reshape(-1, z.shape[-1])
    e2 = codebook.pow(2).sum(-1)
    if exact:
        mixed_e, mixed_e2 = bsc_mix(codebook, p), bsc_mix(e2, p)
    else:
        pe = index_error_probability(index_bits(J), p)
        off = pe / (J - 1)
        mixed_e = (1.0 - pe - off) * codebook + off * codebook.sum(0, keepdim=True)
        mixed_e2 = (1.0 - pe - off) * e2 + off * e2.sum()
    per_vector = flat.pow(2).sum(-1) - 2.0 * (flat * mixed_e[idx]).sum(-1) + mixed_e2[idx]
    return per_vector.mean()


def total_codebook_loss(z: torch.Tensor, codebook: torch.Tensor, p: float, *, beta: float = 0.25,
                        lambda_h: float = 0.1, lambda_ch: float = 1.0, temperature: float = 1.0,
                        exact: bool = True) -> torch.Tensor:
    """Eq. (23): ``L = L_q - lambda_H H + lambda_ch L_ch`` (eqs. 5, 10 and 22).

    ``lambda_h = lambda_ch = 0`` is the plain VQ-VAE loss, ``lambda_ch = 0`` eq. (13); the paper's ablation
    variants are those three and the full loss."""
    lambda_ch = _check_nonnegative(lambda_ch, "lambda_ch")
    loss = entropy_regularised_loss(z, codebook, beta=beta, lambda_h=lambda_h, temperature=temperature)
    if lambda_ch > 0.0:
        loss = loss + lambda_ch * channel_aware_loss(z, codebook, p, exact=exact)
    else:
        check_flip_probability(p)
    return loss


class CodebookLoss(nn.Module):
    """Eq. (23) as a module: ``forward(z, codebook)`` returns ``L_q - lambda_H H + lambda_ch L_ch``.

    The terms of the last call are kept in ``.last`` (floats: ``quantization``, ``entropy_nats``,
    ``channel_aware``, ``total``) for logging."""

    def __init__(self, p: float = 0.0, *, beta: float = 0.25, lambda_h: float = 0.0, lambda_ch: float = 0.0,
                 temperature: float = 1.0, exact: bool = True):
        super().__init__()
        self.p = check_flip_probability(p)
        self.beta = _check_nonnegative(beta, "beta")
        self.lambda_h = _check_nonnegative(lambda_h, "lambda_h")
        self.lambda_ch = _check_nonnegative(lambda_ch, "lambda_ch")
        self.temperature = _check_positive(temperature, "temperature")
        self.exact = bool(exact)
        self.last: dict[str, float] = {}

    def forward(self, z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        e_i = codebook[nearest_indices(z, codebook)]
        l_q = quantization_loss(z, e_i, self.beta)
        h = index_entropy(z, codebook, self.temperature) if self.lambda_h > 0.0 else l_q.new_zeros(())
        l_ch = channel_aware_loss(z, codebook, self.p, exact=self.exact) if self.lambda_ch > 0.0 else l_q.new_zeros(())
        total = l_q - self.lambda_h * h + self.lambda_ch * l_ch
        self.last = {"quantization": float(l_q), "entropy_nats": float(h), "channel_aware": float(l_ch),
                     "total": float(total)}
        return total

    def extra_repr(self) -> str:
        return (f"p={self.p:g}, beta={self.beta:g}, lambda_h={self.lambda_h:g}, lambda_ch={self.lambda_ch:g}, "
                f"temperature={self.temperature:g}, exact={self.exact}")


# =========================================================================== eqs. (18)-(20)


def _check_probs(probs: torch.Tensor, J: int) -> torch.Tensor:
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if probs.shape != (J,):
        raise ConfigError(f"invalid probs: expected shape ({J},), got {tuple(probs.shape)}")
    if not torch.isfinite(probs).all() or (probs < 0).any() or abs(float(probs.sum()) - 1.0) > 1e-6:
        raise ConfigError(f"invalid probs: must be a probability vector summing to 1, got sum={float(probs.sum())!r}")
    return probs


def channel_distortion(codebook: torch.Tensor, probs: torch.Tensor, p: float, exact: bool = True) -> float:
    """Eqs. (18)-(19): ``D_ch = sum_i p_i sum_{k != i} P(k | i) ||e_i - e_k||^2``, in float64.

    ``probs`` are the index probabilities ``p_i`` (``[J]``, summing to 1); ``P`` is the exact eq. (17)
    (``exact=True``) or the random-labelling form, under which ``D_ch = P_e/(J-1) sum_i p_i sum_k ||e_i-e_k||^2``."""
    if codebook.dim() != 2:
        raise ConfigError(f"invalid codebook: expected shape [J, D], got {tuple(codebook.shape)}")
    J = check_codebook_size(codebook.shape[0], "J")
    p = check_flip_probability(p)
    probs = _check_probs(probs, J)
    e = codebook.detach().to(torch.float64)
    d = torch.cdist(e, e).pow(2)
    d.fill_diagonal_(0.0)
    m = transition_matrix(J, p) if exact else transition_matrix_random_labelling(J, p)
    return float((probs * (m * d).sum(1)).sum())


def quantization_distortion(z: torch.Tensor, codebook: torch.Tensor) -> float:
    """``D_q = E ||z - e_i(z)||^2`` of eq. (20), the batch mean over the vectors of ``z``."""
    with torch.no_grad():
        return float(squared_distances(z, codebook).min(dim=-1).values.double().mean())


def total_distortion(z: torch.Tensor, codebook: torch.Tensor, p: float, exact: bool = True) -> float:
    """Eq. (20): ``D = D_q + D_ch``, with ``p_i`` in (18) the empirical frequencies of ``i(z)`` over the batch.

    Equal to the batch mean of :func:`channel_aware_loss` when each codeword is the centroid of its cell."""
    J = check_codebook_size(codebook.shape[0], "J")
    idx = nearest_indices(z, codebook).reshape(-1)
    probs = torch.bincount(idx, minlength=J).double() / idx.numel()
    return quantization_distortion(z, codebook) + channel_distortion(codebook, probs, p, exact)


class MonteCarloDistortion(NamedTuple):
    """A Monte Carlo estimate: ``mean`` of ``||e_i - e_k||^2``, its ``stderr``, and ``samples`` drawn."""

    mean: float
    stderr: float
    samples: int


def monte_carlo_channel_distortion(codebook: torch.Tensor, indices: torch.Tensor, p: float, trials: int = 100,
                                   generator: torch.Generator | None = None) -> MonteCarloDistortion:
    """Monte Carlo of eqs. (18)-(19): send each of ``indices`` as its ``n``-bit label through a BSC(p)
    ``trials`` times, decode the received label to ``k`` and average ``||e_i - e_k||^2``.

    Its expectation is :func:`channel_distortion` with ``probs`` the frequencies of ``indices``."""
    if codebook.dim() != 2:
        raise ConfigError(f"invalid codebook: expected shape [J, D], got {tuple(codebook.shape)}")
    J = check_codebook_size(codebook.shape[0], "J")
    p = check_flip_probability(p)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"invalid trials: must be a positive integer, got trials={trials!r}")
    idx = indices.reshape(-1).long().cpu()
    if idx.numel() == 0 or idx.min() < 0 or idx.max() >= J:
        raise ConfigError(f"invalid indices: need at least one index in 0..{J - 1}")
    e = codebook.detach().to(torch.float64).cpu()
    labels = binary_labels(J)[idx]  # [N, n]
    n = labels.shape[1]
    chunk = max(1, (1 << 22) // max(1, idx.numel() * n))
    total = total_sq = 0.0
    for start in range(0, trials, chunk):
        t = min(chunk, trials - start)
        flips = torch.rand((t,) + tuple(labels.shape), generator=generator) < p
        received = _labels_to_indices(labels.unsqueeze(0) ^ flips.long())  # [t, N]
        err = (e[idx].unsqueeze(0) - e[received]).pow(2).sum(-1)
        total += float(err.sum())
        total_sq += float(err.pow(2).sum())
    count = trials * idx.numel()
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0) * count / max(count - 1, 1)
    return MonteCarloDistortion(mean, math.sqrt(var / count), count)


# =========================================================================== eq. (21)


def rate_bits_per_image(J: int, indices_per_image: int) -> int:
    """``R(J)`` of eq. (21): ``n = ceil(log2 J)`` bits times the number of indices sent per image."""
    if isinstance(indices_per_image, bool) or not isinstance(indices_per_image, int) or indices_per_image < 1:
        raise ConfigError(f"invalid indices_per_image: must be a positive integer, got {indices_per_image!r}")
    return index_bits(J) * indices_per_image


def optimal_codebook_size(distortion_of_J: Mapping[int, float], rate_of_J: Mapping[int, float], mu: float) -> int:
    """Eq. (21): ``J* = argmin_J D(J, p) + mu R(J)`` over the sizes tabulated in both mappings.

    ``distortion_of_J`` maps ``J`` to the total distortion (20) at the channel's ``p``, ``rate_of_J`` to the bits
    per image; ``mu >= 0`` is the bandwidth weight. Ties go to the smaller ``J``."""
    mu = _check_nonnegative(mu, "mu")
    if not distortion_of_J:
        raise ConfigError("invalid distortion_of_J: no codebook sizes given")
    if set(distortion_of_J) != set(rate_of_J):
        raise ConfigError(f"invalid rate_of_J: its sizes {sorted(rate_of_J)} differ from distortion_of_J's "
                          f"{sorted(distortion_of_J)}")
    best, best_cost = None, math.inf
    for J in sorted(check_codebook_size(j) for j in distortion_of_J):
        d, r = float(distortion_of_J[J]), float(rate_of_J[J])
        if not (math.isfinite(d) and math.isfinite(r)):
            raise ConfigError(f"invalid distortion_of_J: D and R must be finite, got D={d!r}, R={r!r} at J={J}")
        cost = d + mu * r
        if cost < best_cost:
            best, best_cost = J, cost
    return best


def bsc_flip_probability(modulation: str, snr_db: float, channel: str = "rayleigh") -> float:
    """The bit-flip probability ``p`` of eqs. (15)-(22) from modulation and SNR (Section III-C, eq. 21).

    The exact uncoded bit error rate of Gray-coded ``modulation`` (``"bpsk"``, ``"qpsk"``, ``"qam16"``,
    ``"qam64"``; ``"16qam"``/``"64qam"`` accepted) over ``channel`` (``"awgn"`` or flat ``"rayleigh"`` with
    coherent detection), at ``snr_db = E_s / N_0`` per symbol: the closed forms of :mod:`semcom.phy.theory`
    (Cho-Yoon exact M-QAM, averaged over Rayleigh per Proakis) at ``E_b / N_0 = E_s / N_0 / log2 M``."""
    key = _MODULATION_ALIASES.get(str(modulation).lower().replace("-", "").replace("_", ""))
    if key is None:
        raise ConfigError(f"invalid modulation: choose from qpsk, qam16, qam64 (or bpsk), got {modulation!r}")
    if channel not in ("awgn", "rayleigh"):
        raise ConfigError(f"invalid channel: choose 'awgn' or 'rayleigh', got {channel!r}")
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(snr_db)):
        raise ConfigError(f"invalid snr_db: must be a finite number, got snr_db={snr_db!r}")
    from semcom.phy.theory import ber_qam_awgn, ber_qam_fading  # imports Sionna (through semcom.phy): deferred

    order = _ORDERS[key]
    ebn0_db = float(snr_db) - 10.0 * math.log10(math.log2(order))
    ber = ber_qam_awgn(order, ebn0_db) if channel == "awgn" else ber_qam_fading(order, ebn0_db, 1)
    return float(min(max(float(ber), 0.0), 0.5))
