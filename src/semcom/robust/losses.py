"""The robust paper's training loss, term by term, with its weights taken from :class:`RobustConfig`.

``L = sum_task w_task L_task + L_codebook + beta L_commit + lambda_orth L_orth + gamma L_FIM + lambda_sim L_s``:

* task terms (the first term of eq. (12), ``||s^ - z||^2`` against the task's target): ``classification``, the
  cross entropy of the logits (``L_CE(s^', z)`` of eq. 16); ``reconstruction``, the mean squared error of the
  pixels; ``retrieval``, a supervised contrastive loss on the unit-norm embeddings (the paper does not name its
  retrieval loss; recall@1 needs only that same-label images lie close);
* ``codebook`` and ``commitment``: the second and third terms of eq. (12) (``beta`` = ``config.beta``);
* ``orthogonality``: ``||E^T E - I||^2 / J^2`` over the normalised codewords (Section IV-B3), ``lambda_orth``;
* ``fim``: the FIM's cross entropy, eq. (15), with ``gamma`` = ``config.lambda_fim`` and one FIM (``L = 1`` in
  eq. 16); needs labels;
* ``similarity``: eq. (17), ``L_s = -||F^T F||^2`` over the normalised encoded features of each image (divided by
  ``T^2`` and averaged over the batch), weighted by ``lambda_sim`` (0 by default: it pulls features together,
  which makes more indices duplicates for the deduplication, at the cost of what they carry).

A term whose weight is 0 is not computed. Labels are needed for classification, retrieval and the FIM term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from semcom.errors import ConfigError
from semcom.robust.config import RobustConfig
from semcom.robust.model import RobustOutput

__all__ = ["robust_loss", "similarity_loss", "supervised_contrastive_loss"]


def supervised_contrastive_loss(embedding: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
                                ) -> torch.Tensor:
    """Khosla et al.'s supervised contrastive loss over a batch of unit-norm ``embedding`` ``[B, E]``: for each
    anchor with at least one other same-label image, minus the mean log-softmax (over all other images, at
    ``temperature``) of its positives. 0 when no anchor has a positive."""
    b = embedding.shape[0]
    sim = embedding @ embedding.transpose(0, 1) / temperature
    eye = torch.eye(b, dtype=torch.bool, device=embedding.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~eye
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    if not bool(has.any()):
        return embedding.sum() * 0.0
    mean_pos = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1)[has] / n_pos[has]
    return -mean_pos.mean()


def similarity_loss(features: torch.Tensor) -> torch.Tensor:
    """Eq. (17): ``-||F^T F||^2`` with ``F`` the unit-normalised encoded features of one image (``[B, T, D]``),
    divided by ``T^2`` and averaged over the batch (so it lies in [-1, 0])."""
    f = F.normalize(features, dim=-1)
    gram = f @ f.transpose(1, 2)
    return -(gram.pow(2).sum(dim=(1, 2)) / features.shape[1] ** 2).mean()


def robust_loss(out: RobustOutput, images: torch.Tensor, labels: torch.Tensor | None,
                config: RobustConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(total, terms)`` of the module docstring for a forward pass ``out`` of ``images`` (``[B, C, H, W]``)
    with ``labels`` (``[B]`` int64 or ``None``). ``terms`` holds the unweighted terms."""
    c = config
    terms: dict[str, torch.Tensor] = {}
    total = images.new_zeros(())
    needs_labels = (("classification" in c.tasks and c.w_classification > 0)
                    or ("retrieval" in c.tasks and c.w_retrieval > 0)
                    or (out.fim_logits is not None and c.lambda_fim > 0))
    if needs_labels and labels is None:
        raise ConfigError("labels are needed for the classification, retrieval and FIM losses")
    if out.logits is not None and c.w_classification > 0:
        terms["classification"] = F.cross_entropy(out.logits, labels)
        total = total + c.w_classification * terms["classification"]
    if out.embedding is not None and c.w_retrieval > 0:
        terms["retrieval"] = supervised_contrastive_loss(out.embedding, labels, c.retrieval_temperature)
        total = total + c.w_retrieval * terms["retrieval"]
    if out.reconstruction is not None and c.w_reconstruction > 0:
        terms["reconstruction"] = F.mse_loss(out.reconstruction, images)
        total = total + c.w_reconstruction * terms["reconstruction"]
    if "codebook" in out.losses:
        terms["codebook"] = out.losses["codebook"]
        terms["commitment"] = out.losses["commitment"]
        total = total + terms["codebook"] + c.beta * terms["commitment"]
    if "orthogonality" in out.losses and c.lambda_orth > 0:
        terms["orthogonality"] = out.losses["orthogonality"]
        total = total + c.lambda_orth * terms["orthogonality"]
    if out.fim_logits is not None and c.lambda_fim > 0:
        terms["fim"] = F.cross_entropy(out.fim_logits, labels)
        total = total + c.lambda_fim * terms["fim"]
    if c.lambda_sim > 0:
        terms["similarity"] = similarity_loss(out.features)
        total = total + c.lambda_sim * terms["similarity"]
    return total, terms
