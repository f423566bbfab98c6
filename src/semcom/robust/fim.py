"""The feature importance module (FIM) of the robust paper, Section IV-A2 and eqs. (13)-(16), driven by the SNR.

The paper: the raw feature map ``F^l = [f_1, .., f_N] in R^{M x N}`` (``N`` features of dimension ``M``) is
reduced by global average pooling, eq. (13), ``f^_n = (1/M) sum_m f_n(m)``, and the SNR ``mu`` is prepended:
``f^ = [mu, f^_1, .., f^_N] in R^{N+1}``. An auxiliary DNN of fully connected layers with ReLU maps ``f^`` to the
task output ``z in R^C``; its parameters "can be written as ``W = [w_mu, w_1, .., w_N] in R^{C x (N+1)}``", and the
importance of feature ``n`` is ``w^_n = (1/C) sum_c w_n(c)``, eq. (14), scaled to [0, 1] by a softmax. The features
are reweighted, ``f~_n = w^_n f_n``, and a feature whose weight is below a threshold "will be masked and not passed
to the next layer", which reduces the transmission overhead. The FIM is trained with the cross entropy of its own
prediction ``p = softmax(W f^)`` against the label, eq. (15), weighted by ``gamma`` in the total loss, eq. (16).

**Our reading, made exact.**

* **Features are the transmitted tokens.** ``N`` is the number of patch positions, ``M = D`` the code dimension:
  the FIM sits between the encoder and the quantiser, and a feature it masks is a token whose index is not sent
  ("the transmitter only needs to send the indices of the important task-related features in the codebook";
  Fig. 9 plots about 200 features, the 14 x 14 = 196 patches of Section V-A). GAP values of the tokens are placed
  at their patch positions; masked-out patches contribute 0.
* **The SNR** enters as ``mu = snr_db / 10`` (dB over ten, to keep the input on the scale of the pooled features).
* **W of a multi-layer FC network.** With one hidden ReLU layer, ``logits = W_2 relu(W_1 f^ + b_1) + b_2``, the
  map is piecewise linear and its matrix on the input is ``W(f^) = W_2 diag(1[W_1 f^ + b_1 > 0]) W_1``, ``C x
  (N+1)``: the paper's ``W``. Its column means, eq. (14), therefore depend on the sample **and on the SNR** through
  the ReLU gates (a single linear layer would give weights independent of both, and SNR could not matter).
* **Scaling.** The softmax runs over the tokens of one image; we multiply it by their number ``T`` so that equal
  importance leaves the features unchanged (the bare softmax would shrink every feature by ``1/T``, which the
  following layers would have to undo). ``threshold`` applies to this scaled weight: tokens below it are not sent
  (0 sends all; the best token of each image is always sent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from semcom.errors import ConfigError

__all__ = ["FIMOutput", "FeatureImportance", "snr_tensor"]


def snr_tensor(snr_db, batch_size: int, device=None) -> torch.Tensor:
    """The SNR in dB as a float tensor ``[B]`` (a number, or one value per image); a non-finite value is a
    one-line :class:`ConfigError`."""
    t = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
    if t.dim() == 0:
        t = t.expand(batch_size)
    if t.shape != (batch_size,):
        raise ConfigError(f"invalid snr_db: expected a number or {batch_size} values, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ConfigError("invalid snr_db: must be finite")
    return t


@dataclass
class FIMOutput:
    """``features`` reweighted (``[B, T, M]``), the scaled importance ``weights`` ``[B, T]`` (mean 1 over each
    image's tokens), ``keep`` ``[B, T]`` bool (weight at least the threshold) and the FIM's own ``logits`` ``[B, C]``
    (eq. 15)."""

    features: torch.Tensor
    weights: torch.Tensor
    keep: torch.Tensor
    logits: torch.Tensor


class FeatureImportance(nn.Module):
    """The FIM of eqs. (13)-(15) over ``num_positions`` token positions, ``n_out`` outputs ``C`` (the classes),
    one hidden FC layer of ``hidden`` units, and the mask ``threshold`` on the scaled weights."""

    def __init__(self, num_positions: int, n_out: int, hidden: int = 64, threshold: float = 0.0):
        super().__init__()
        if threshold < 0:
            raise ConfigError(f"invalid fim_threshold={threshold!r}: must be non-negative")
        self.num_positions, self.threshold = num_positions, float(threshold)
        self.fc1 = nn.Linear(num_positions + 1, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def activation_map(self, features: torch.Tensor, positions: torch.Tensor, snr_db) -> torch.Tensor:
        """Eq. (13) with the SNR: ``f^ = [mu, f^_1, .., f^_N]``, ``[B, N+1]``; ``features`` ``[B, T, M]`` at patch
        ``positions`` ``[B, T]``."""
        b = features.shape[0]
        gap = features.mean(dim=-1)  # eq. (13)
        pooled = torch.zeros(b, self.num_positions, dtype=features.dtype, device=features.device)
        pooled = pooled.scatter(1, positions, gap)
        mu = snr_tensor(snr_db, b, features.device).to(features.dtype).unsqueeze(1) / 10.0
        return torch.cat([mu, pooled], dim=1)

    def importance(self, f_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w^, logits)``: eq. (14)'s column means of the network's matrix ``W(f^)`` for the ``N`` features
        (``[B, N]``, before the softmax) and the FIM's logits ``W f^ + b`` (``[B, C]``)."""
        h = self.fc1(f_hat)
        gate = (h > 0).to(h.dtype)
        logits = self.fc2(torch.relu(h))
        v = self.fc2.weight.mean(dim=0)  # (1/C) sum_c of W_2's rows, [hidden]
        w_hat = (gate * v) @ self.fc1.weight[:, 1:]  # [B, N]: mean over c of W_2 diag(gate) W_1, features only
        return w_hat, logits

    def forward(self, features: torch.Tensor, positions: torch.Tensor, snr_db) -> FIMOutput:
        f_hat = self.activation_map(features, positions, snr_db)
        w_hat, logits = self.importance(f_hat)
        w_tok = torch.gather(w_hat, 1, positions)  # the kept tokens' weights, [B, T]
        weights = torch.softmax(w_tok, dim=1) * w_tok.shape[1]
        keep = weights >= self.threshold
        best = weights.argmax(dim=1, keepdim=True)
        keep = keep.scatter(1, best, torch.ones_like(best, dtype=torch.bool))
        return FIMOutput(features * weights.unsqueeze(-1), weights, keep, logits)
