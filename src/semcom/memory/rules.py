"""Hit/miss decision rules: the policy ``pi`` of Section II-B of the Hopfield paper.

A rule decides, at the transmitter, whether the latent ``z`` is a hit (send
an index ``j``) or a miss (send ``Q(z)``), and says what the receiver
reconstructs from an index (:meth:`DecisionRule.readout`), using only the
memory, which both sides share. Selectable by name (:data:`RULES`):

``nearest`` (the VQ baseline, eq. 1)
    ``j* = argmax_j <z, mu_j>``; hit iff ``<z, mu_j*> >= tau``; the receiver
    reconstructs ``mu_j*`` (eq. 2).

``paper`` (Theorem 2's proof, taken literally)
    ``z~ = normalize(sum_j softmax_j(beta <z, mu_j>) mu_j)`` (eq. 4); hit iff
    ``<z~, mu_j*> >= tau``; the receiver reconstructs ``mu_j*``. With a
    single stored prototype ``z~ = mu_1`` and every frame is a hit, whatever
    ``tau``: the test is on the attractor, not on what the receiver decodes.

``hopfield`` (semcom's default Hopfield rule)
    The receiver's readout of index ``j`` is the Hopfield update of the
    stored prototype itself, computable from the memory alone::

        r_j = normalize(sum_k softmax_k(beta <mu_j, mu_k>) mu_k)          (H1)

    The transmitter takes the ``top_k`` prototypes nearest to ``z``,
    computes their readouts, and sends the index whose readout is closest::

        j* = argmax_{j in top_k(z)} <z, r_j>,   hit iff <z, r_j*> >= tau   (H2)

    The hit test is on exactly what the receiver decodes (``r_j*``). As
    ``beta -> inf``, ``r_j -> mu_j`` (``<mu_j, mu_j> = 1`` is the largest
    score) and (H2) becomes ``nearest``.

Cost at scale (docs/scale.md). The exact scan of eq. (1) is one product with
the memory's transposed copy (:meth:`PrototypeMemory.scores`). (H1) depends on
the memory alone, and a hit does not change the stored vectors, so readouts
are cached between misses (:meth:`PrototypeMemory.derived`, emptied at every
write): a run of hits costs the scan, a top-k and ``top_k`` dot products. The
receiver's readout (:meth:`HopfieldRule.readout`) is always computed by the
same function, one prototype at a time, at both ends, so what the receiver
decodes is bit for bit what the transmitter reconstructs; the transmitter's
batched readouts of its candidates are cached apart and only score (H2).
With ``index="approx"`` the candidates come from the memory's inverted file
(:mod:`semcom.memory.index`) and are re-scored exactly, so a hit is declared
only when the exact score of the candidate passes ``tau``; the receiver needs
no index. ``paper`` needs every score for eq. (4) and always scans.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from semcom.config import DEFAULT_BETA, LinkConfig
from semcom.memory.hopfield import hopfield_retrieve
from semcom.memory.store import PrototypeMemory


@dataclass(frozen=True)
class Decision:
    """The transmitter's decision for one latent: ``hit``, the ``index`` j*, and the tested ``score``."""

    hit: bool
    index: int | None
    score: float


MISS_EMPTY = Decision(hit=False, index=None, score=float("-inf"))


class DecisionRule(ABC):
    """Strategy for eq. (1)/(2): :meth:`decide` at Tx, :meth:`readout` at both ends."""

    name: str

    def __init__(self, tau: float, beta: float = DEFAULT_BETA, top_k: int = 4):
        self.tau, self.beta, self.top_k = tau, beta, top_k

    def decide(self, z: torch.Tensor, memory: PrototypeMemory) -> Decision:
        """Hit or miss for the unit-norm latent ``z`` (d,) against ``memory``."""
        if memory.size == 0:
            return MISS_EMPTY
        index, score = self._best(z, memory)
        return Decision(hit=score >= self.tau, index=index, score=score)

    def decide_batch(self, queries: torch.Tensor, memory: PrototypeMemory) -> list[Decision]:
        """:meth:`decide` for each row of ``queries`` (B, d) against the same memory."""
        return [self.decide(z, memory) for z in queries]

    @abstractmethod
    def _best(self, z: torch.Tensor, memory: PrototypeMemory) -> tuple[int, float]:
        """The candidate index and the score its hit test compares with ``tau``."""

    def readout(self, index: int, memory: PrototypeMemory) -> torch.Tensor:
        """What the receiver reconstructs on a hit with ``index``: ``mu_index`` (eq. 2)."""
        return memory.prototypes[index].clone()

    def readouts(self, memory: PrototypeMemory) -> torch.Tensor:
        """Every stored prototype's readout, (M, d): what a cue lookup searches."""
        return memory.prototypes.clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tau={self.tau}, beta={self.beta}, top_k={self.top_k})"


class NearestRule(DecisionRule):
    """The VQ baseline: hard nearest-prototype selection, eq. (1)."""

    name = "nearest"

    def _best(self, z, memory):
        if memory.index == "approx":  # the inverted file's candidate, scored exactly
            j = int(memory.candidates(z, 1)[0])
            return j, _exact_score(z, memory, j)
        return memory.nearest(z)

    def decide_batch(self, queries: torch.Tensor, memory: PrototypeMemory) -> list[Decision]:
        """Eq. (1) for a batch: one chunked (B, d) x (d, M) product and a row-wise argmax
        (:meth:`PrototypeMemory.nearest_batch`), or the inverted file's candidates scored exactly."""
        if memory.size == 0:
            return [MISS_EMPTY] * len(queries)
        if memory.index == "approx":
            q = queries.detach().to(torch.float32).contiguous()
            js = memory.approx_index().search_batch(q.numpy(), 1)[:, 0]
            scores = (memory.prototypes[torch.from_numpy(js)] * q).sum(dim=1).tolist()
        else:
            js, scores = memory.nearest_batch(queries)
            scores = scores.tolist()
        return [Decision(hit=s >= self.tau, index=int(j), score=s) for j, s in zip(js, scores)]


class PaperRule(DecisionRule):
    """Theorem 2's proof literally: hit iff ``<z~, mu_j*> >= tau`` with ``z~`` from eq. (4)."""

    name = "paper"

    def _best(self, z, memory):
        # one scan serves both eq. (1)'s argmax and eq. (4)'s softmax (every score is needed: no index)
        s = torch.from_numpy(memory.scores(z))
        j = int(torch.argmax(s))
        w = torch.softmax(self.beta * s, dim=0)
        z_tilde = F.normalize(w @ memory.prototypes, dim=0)
        return j, float(z_tilde @ memory.prototypes[j])


class HopfieldRule(DecisionRule):
    """Receiver-reproducible Hopfield rule, eqs. (H1)-(H2) in the module docstring."""

    name = "hopfield"

    def _best(self, z, memory):
        cands = memory.candidates(z, self.top_k).tolist()
        cache = memory.derived(("hopfield.scoring", self.beta))
        missing = [c for c in dict.fromkeys(cands) if c not in cache]
        if missing:  # (H1) for the candidates not seen since the last change, in one batch
            p = memory.prototypes
            for c, r in zip(missing, hopfield_retrieve(p[missing], p, self.beta)):
                cache[c] = r
        scores = torch.stack([cache[c] for c in cands]) @ z
        c = int(torch.argmax(scores))
        return cands[c], float(scores[c])

    def readout(self, index: int, memory: PrototypeMemory) -> torch.Tensor:
        """(H1): the Hopfield update of the stored prototype ``mu_index`` (cached between misses; the same
        computation at both ends)."""
        cache = memory.derived(("hopfield.readout", self.beta))
        r = cache.get(index)
        if r is None:
            p = memory.prototypes
            r = cache[index] = hopfield_retrieve(p[index : index + 1], p, self.beta)[0]
        return r.clone()

    def readouts(self, memory: PrototypeMemory) -> torch.Tensor:
        """(H1) for every stored prototype at once."""
        return hopfield_retrieve(memory.prototypes, memory.prototypes, self.beta)


def _exact_score(z: torch.Tensor, memory: PrototypeMemory, j: int) -> float:
    """``<z, mu_j>`` for one stored slot, in float32."""
    return float(np.dot(memory.transposed[:, j], z.detach().to(torch.float32).numpy()))


RULES: dict[str, type[DecisionRule]] = {r.name: r for r in (NearestRule, HopfieldRule, PaperRule)}


def make_rule(config: LinkConfig) -> DecisionRule:
    """The rule named by ``config.rule``, with its ``tau``, ``beta`` and ``top_k``."""
    return RULES[config.rule](config.tau, config.beta, config.top_k)
