"""Modern Hopfield retrieval, eq. (4) of the Hopfield paper.

``w_j = softmax_j(beta <z, mu_j>)``, ``z~ = sum_j w_j mu_j / ||sum_j w_j mu_j||``.
Vectorised: one (B, d) x (d, M) product for the scores and one (B, M) x (M, d)
product for the readout; never a Python loop over prototypes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hopfield_weights(queries: torch.Tensor, prototypes: torch.Tensor, beta: float) -> torch.Tensor:
    """Attention weights ``w`` (B, M) of eq. (4) for queries (B, d) and prototypes (M, d)."""
    return torch.softmax(beta * (queries @ prototypes.T), dim=-1)


def hopfield_retrieve(queries: torch.Tensor, prototypes: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. (4): the normalised Hopfield readout ``z~`` (B, d) of each query."""
    return F.normalize(hopfield_weights(queries, prototypes, beta) @ prototypes, dim=-1)
