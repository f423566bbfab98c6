"""The discrete codebook of the masked VQ-VAE (Section III-B of the robust paper), its orthogonality loss
(Section IV-B3) and the similarity-based deduplication of transmitted indices (Section IV-B1, Fig. 2b).

* :class:`VectorQuantizer`: ``J`` codewords ``e_j in R^D`` (``E in R^{J x D}``); each encoded feature ``z_e`` is
  replaced by its nearest codeword, eq. (11), with the straight-through estimator (the decoder's gradient is
  copied to ``z_e``, in training **and** in eval mode, so attacks see an end-to-end gradient); the loss terms of
  eq. (12): the codebook term ``||ng[z_e] - e_j||^2`` and the commitment term ``beta ||z_e - ng[e_j]||^2``
  (squared norms summed over ``D`` and averaged over the vectors, as in :mod:`semcom.quantization.codebook`).
  Written by hand rather than on ``vector_quantize_pytorch.VectorQuantize`` because that library applies its
  straight-through estimator only in training mode: in eval mode its output has no gradient with respect to the
  input, which would hide the model from gradient attacks (gradient masking). It keeps the library's two
  training aids in simple form: the codewords are seeded from the first training batch of encoder outputs, and a
  codeword whose EMA usage falls below ``dead_code_threshold`` is re-seeded from the batch.
* :func:`orthogonality_loss`: ``||E^T E - I||_F^2`` over the **normalised** codewords ``e_j / ||e_j||`` (the
  paper's "E consists of the normalized basis vectors", its ``(i, j)``-th entry "the semantic similarity of
  ``e_i`` and ``e_j``"). The paper adds ``||E^T E||^2``; with unit codewords the diagonal is 1, so the two differ
  by the constant ``J`` and have the same gradient; the ``- I`` form is 0 exactly for orthonormal codewords. With
  ``J > D`` it cannot reach 0: its minimum is ``J^2 / D - J`` (a tight frame). ``reduction="mean"`` divides by
  ``J^2``, which is ``vector_quantize_pytorch``'s ``orthogonal_loss_fn`` for one codebook.
* Deduplication, :func:`dedup_encode` / :func:`dedup_decode`: "If the semantic similarity of two vectors is
  larger than a given threshold delta, the transmitter is required to transmit only one vector and the other is
  masked." Our exact protocol, per image:

  - the transmitter holds the kept indices ``i_1..i_T`` at patch positions ``p_1 < .. < p_T``; it scans them in
    position order and **sends** ``i_t`` unless the cosine similarity of its codeword to the codeword of an index
    already sent exceeds ``delta``, in which case ``i_t`` is **dropped** (masked). The same index twice has
    similarity 1, so a repeated index is always dropped when ``delta < 1``; ``delta = 1`` sends everything;
  - the receiver gets a :class:`DedupMessage`: the positions of the sent indices (a bitmap of ``N`` bits: which
    patches carry an index) and the sent indices in position order (``log2 J`` bits each), nothing else;
  - it rebuilds the grid of ``N`` patch positions: the received index at each received position and ``-1``
    ("masked") everywhere else; the decoder puts its learned mask token at every ``-1``, exactly as at the
    positions the masking removed. The dropped positions are thus indistinguishable from masked ones, as the
    paper says ("the other is masked").

  So ``dedup_decode(dedup_encode(x))`` equals ``x`` at every sent position, is ``-1`` elsewhere, the sent indices
  are pairwise at most ``delta`` similar, and every dropped index is more than ``delta`` similar to an index
  sent before it; with ``delta = 1`` it is lossless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from semcom.errors import ConfigError, WireFormatError
from semcom.quantization.codebook import nearest_indices

__all__ = ["DedupMessage", "VectorQuantizer", "codeword_similarity", "dedup_decode", "dedup_encode", "dedup_mask",
           "orthogonality_loss"]


def orthogonality_loss(codebook: torch.Tensor, reduction: str = "sum", normalize: bool = True) -> torch.Tensor:
    """``||E^T E - I||_F^2`` of Section IV-B3 for the codewords ``codebook`` (``[J, D]``, one per row), normalised
    to unit length first (``normalize=False``: the raw Gram matrix). ``reduction="sum"`` is the formula;
    ``"mean"`` divides by ``J^2``. Differentiable."""
    if codebook.dim() != 2:
        raise ConfigError(f"invalid codebook: expected shape [J, D], got {tuple(codebook.shape)}")
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"invalid reduction={reduction!r}: choose 'sum' or 'mean'")
    e = torch.nn.functional.normalize(codebook, dim=1) if normalize else codebook
    gram = e @ e.transpose(0, 1)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    loss = (gram - eye).pow(2).sum()
    return loss / gram.shape[0] ** 2 if reduction == "mean" else loss


def codeword_similarity(codebook: torch.Tensor) -> torch.Tensor:
    """The semantic similarity of Section IV-B1 between codewords: cosine ``e_i . e_j / (||e_i|| ||e_j||)``,
    ``[J, J]`` in float64, clamped to [-1, 1] with the diagonal exactly 1 (Fig. 10 plots it)."""
    e = torch.nn.functional.normalize(codebook.detach().double(), dim=1)
    sim = (e @ e.transpose(0, 1)).clamp(-1.0, 1.0)
    sim.fill_diagonal_(1.0)
    return sim


def _check_threshold(delta) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) \
            or not -1.0 <= delta <= 1.0:
        raise ConfigError(f"invalid dedup_threshold={delta!r}: must be a cosine similarity in [-1, 1]")
    return float(delta)


def dedup_mask(indices: torch.Tensor, similarity: torch.Tensor, delta: float,
               candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Which of the indices ``[B, T]`` (in position order) the transmitter sends: ``[B, T]`` bool, the greedy scan
    of the module docstring under the codeword similarity matrix ``similarity`` (``[J, J]``) and threshold
    ``delta``. ``candidates`` (``[B, T]`` bool) marks the indices eligible at all (e.g. those the FIM keeps);
    the others are never sent and never suppress another."""
    delta = _check_threshold(delta)
    b, t = indices.shape
    send = torch.ones(b, t, dtype=torch.bool, device=indices.device)
    if candidates is not None:
        send &= candidates.to(indices.device)
    if delta >= 1.0 or t < 2:
        return send
    sim = similarity.to(indices.device)
    for k in range(1, t):
        s = sim[indices[:, k].unsqueeze(1), indices[:, :k]]  # [B, k]
        send[:, k] &= ~((s > delta) & send[:, :k]).any(dim=1)
    return send


@dataclass(frozen=True)
class DedupMessage:
    """What the receiver gets for one image: the patch ``positions`` (int64, ascending) that carry an index and
    the ``indices`` sent there (int64, same length), out of ``num_patches`` positions and ``J`` codewords."""

    positions: torch.Tensor
    indices: torch.Tensor
    num_patches: int
    J: int

    def bits(self, positions_known: bool = False) -> int:
        """Bits on the wire: ``log2 J`` per index plus an ``N``-bit position map (``positions_known=True``: the
        receiver knows the positions already, e.g. from a shared masking seed without deduplication; Table I of
        the paper counts index bits only)."""
        per_index = int(math.ceil(math.log2(self.J)))
        return per_index * int(self.indices.numel()) + (0 if positions_known else self.num_patches)


def dedup_encode(indices: torch.Tensor, positions: torch.Tensor, codebook: torch.Tensor, delta: float,
                 num_patches: int) -> DedupMessage:
    """The transmitter's side for one image: the kept ``indices`` ``[T]`` at patch ``positions`` ``[T]``
    (ascending) to the :class:`DedupMessage` of the module docstring, against ``codebook`` ``[J, D]``."""
    indices, positions = torch.as_tensor(indices).long().flatten(), torch.as_tensor(positions).long().flatten()
    if indices.shape != positions.shape:
        raise ConfigError(f"invalid positions: {positions.numel()} positions for {indices.numel()} indices")
    J = codebook.shape[0]
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= J):
        raise ConfigError(f"invalid indices: values must be in 0..{J - 1}")
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= num_patches
                              or bool((positions[1:] <= positions[:-1]).any())):
        raise ConfigError(f"invalid positions: must be strictly ascending in 0..{num_patches - 1}")
    send = dedup_mask(indices.unsqueeze(0), codeword_similarity(codebook), delta)[0]
    return DedupMessage(positions[send].clone(), indices[send].clone(), int(num_patches), int(J))


def dedup_decode(message: DedupMessage) -> torch.Tensor:
    """The receiver's side: the grid of ``N`` patch positions (int64 ``[N]``) holding the received index at each
    received position and ``-1`` (masked: the decoder's mask token) everywhere else."""
    pos, idx = message.positions.long(), message.indices.long()
    n = message.num_patches
    if pos.shape != idx.shape or (pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= n)):
        raise WireFormatError(f"dedup message: positions must be {idx.numel()} values in 0..{n - 1}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= message.J):
        raise WireFormatError(f"dedup message: indices must be in 0..{message.J - 1}")
    grid = torch.full((n,), -1, dtype=torch.long)
    grid[pos] = idx
    return grid


class VectorQuantizer(nn.Module):
    """Nearest-codeword quantiser with the straight-through estimator and the loss terms of eq. (12).

    ``forward(z)`` (``z``: ``[..., D]``) returns ``(z_q, indices, losses)``: ``z_q = z + ng[e_i - z]`` (the
    codewords in the forward pass, the identity in the backward pass), ``indices`` ``[...]`` int64 and
    ``losses`` with ``codebook`` (``||ng[z] - e_i||^2``) and ``commitment`` (``||z - ng[e_i]||^2``, unweighted;
    :mod:`semcom.robust.losses` applies ``beta``). The squared errors are summed over the ``D`` coordinates
    (``loss_reduction="sum"``, the default) or averaged over them (``"mean"``: the per-element MSE of most VQ-VAE
    code, ``1/D`` of the sum). With ``"sum"`` the commitment term's gradient on the encoder grows with ``D`` while
    the task's does not: at ``D = 32`` with few tokens per image (patch 8 or 16 on 32x32 digits) it outweighs the
    classifier's at initialisation and the encoder collapses every token onto one codeword."""

    def __init__(self, J: int = 256, code_dim: int = 32, dead_code_threshold: float = 0.0, decay: float = 0.99,
                 loss_reduction: str = "sum"):
        super().__init__()
        if J < 2 or J & (J - 1):
            raise ConfigError(f"invalid J={J!r}: codebook size must be a power of two >= 2")
        if loss_reduction not in ("sum", "mean"):
            raise ConfigError(f"invalid loss_reduction={loss_reduction!r}: choose 'sum' or 'mean'")
        self.loss_reduction = loss_reduction
        self.J, self.code_dim = J, code_dim
        self.dead_code_threshold, self.decay = float(dead_code_threshold), float(decay)
        self.codebook = nn.Parameter(torch.randn(J, code_dim) / math.sqrt(code_dim))
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("usage", torch.ones(J))

    @torch.no_grad()
    def _seed(self, flat: torch.Tensor, which: torch.Tensor | None = None) -> None:
        """Re-seed codewords (all, or the boolean mask ``which``) from random vectors of the batch ``flat``."""
        rows = torch.arange(self.J, device=flat.device) if which is None else which.nonzero().flatten()
        if rows.numel() == 0 or flat.shape[0] == 0:
            return
        pick = torch.randint(0, flat.shape[0], (rows.numel(),), device=flat.device)
        jitter = 0.01 * flat.std().clamp_min(1e-6) * torch.randn(rows.numel(), flat.shape[1], device=flat.device)
        self.codebook.data[rows] = flat[pick] + jitter

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The codewords ``e_i`` of integer ``indices`` ``[...]`` -> ``[..., D]`` (the receiver's look-up)."""
        return self.codebook[indices.long()]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if z.shape[-1] != self.code_dim:
            raise ConfigError(f"invalid z: last dimension must be D={self.code_dim}, got {tuple(z.shape)}")
        flat = z.reshape(-1, self.code_dim)
        if self.training and not bool(self.initted):
            self._seed(flat.detach())
            self.initted.fill_(True)
        idx = nearest_indices(flat.detach(), self.codebook)
        e = self.codebook[idx]
        reduce = (lambda sq: sq.sum(-1).mean()) if self.loss_reduction == "sum" else (lambda sq: sq.mean())
        losses = {"codebook": reduce((flat.detach() - e).pow(2)),
                  "commitment": reduce((flat - e.detach()).pow(2))}
        if self.training and self.dead_code_threshold > 0.0:
            with torch.no_grad():
                counts = torch.bincount(idx, minlength=self.J).to(self.usage.dtype)
                self.usage.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
                dead = self.usage < self.dead_code_threshold
                if bool(dead.any()):
                    self._seed(flat.detach(), dead)
                    self.usage[dead] = self.dead_code_threshold
        z_q = flat + (e - flat).detach()
        return z_q.reshape(z.shape), idx.reshape(z.shape[:-1]), losses
