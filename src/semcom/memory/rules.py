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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

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
        index, score = self._best(z, memory.prototypes)
        return Decision(hit=score >= self.tau, index=index, score=score)

    @abstractmethod
    def _best(self, z: torch.Tensor, prototypes: torch.Tensor) -> tuple[int, float]:
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

    def _best(self, z, prototypes):
        s = prototypes @ z
        j = int(torch.argmax(s))
        return j, float(s[j])


class PaperRule(DecisionRule):
    """Theorem 2's proof literally: hit iff ``<z~, mu_j*> >= tau`` with ``z~`` from eq. (4)."""

    name = "paper"

    def _best(self, z, prototypes):
        j = int(torch.argmax(prototypes @ z))
        z_tilde = hopfield_retrieve(z[None], prototypes, self.beta)[0]
        return j, float(z_tilde @ prototypes[j])


class HopfieldRule(DecisionRule):
    """Receiver-reproducible Hopfield rule, eqs. (H1)-(H2) in the module docstring."""

    name = "hopfield"

    def _best(self, z, prototypes):
        k = min(self.top_k, prototypes.shape[0])
        cands = torch.topk(prototypes @ z, k).indices
        scores = hopfield_retrieve(prototypes[cands], prototypes, self.beta) @ z
        c = int(torch.argmax(scores))
        return int(cands[c]), float(scores[c])

    def readout(self, index: int, memory: PrototypeMemory) -> torch.Tensor:
        """(H1): the Hopfield update of the stored prototype ``mu_index``."""
        p = memory.prototypes
        return hopfield_retrieve(p[index : index + 1], p, self.beta)[0]

    def readouts(self, memory: PrototypeMemory) -> torch.Tensor:
        """(H1) for every stored prototype at once."""
        return hopfield_retrieve(memory.prototypes, memory.prototypes, self.beta)


RULES: dict[str, type[DecisionRule]] = {r.name: r for r in (NearestRule, HopfieldRule, PaperRule)}


def make_rule(config: LinkConfig) -> DecisionRule:
    """The rule named by ``config.rule``, with its ``tau``, ``beta`` and ``top_k``."""
    return RULES[config.rule](config.tau, config.beta, config.top_k)
