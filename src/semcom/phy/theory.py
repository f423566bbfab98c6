"""Closed-form bit error rates of uncoded Gray-coded modulations, to check the Monte Carlo against.

All functions take ``ebn0_db``, the energy per bit over the noise density in
dB (scalar or array), and return the bit error probability.

* BPSK / QPSK over AWGN: ``Q(sqrt(2 Eb/N0))``.
* Gray M-QAM over AWGN, the standard approximation (nearest neighbours)::

      P_b ~ 4 / log2(M) * (1 - 1 / sqrt(M)) * Q(sqrt(3 log2(M) / (M - 1) * Eb/N0))

* Gray square M-QAM over AWGN, exact: Cho and Yoon, "On the general BER
  expression of one- and two-dimensional amplitude modulations", IEEE Trans.
  Commun. 50(7), 2002, eq. (14)-(16); a sum of ``erfc(c_j sqrt(Eb/N0))`` terms.
* BPSK over Rayleigh fading: ``(1 - sqrt(g / (1 + g))) / 2`` with ``g = Eb/N0``
  (Proakis, Digital Communications, eq. 14.3-7).
* ``L``-branch diversity over i.i.d. Rayleigh (maximal-ratio combining, or ZF
  MIMO with ``L = N_r - N_s + 1``), Proakis eq. 14.4-15::

      P_b = ((1 - mu) / 2)^L * sum_{k<L} C(L - 1 + k, k) ((1 + mu) / 2)^k,  mu = sqrt(g / (1 + g))

  Because the exact M-QAM expression is linear in ``erfc(c sqrt(g))``,
  averaging each term this way gives the exact M-QAM BER over Rayleigh and
  over ZF MIMO as well (:func:`ber_qam_fading`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import comb, erfc

__all__ = ["q_function", "db2lin", "ber_bpsk_awgn", "ber_qam_awgn_approx", "ber_qam_awgn", "ber_bpsk_rayleigh",
           "ber_bpsk_diversity", "ber_qam_fading", "theory_ber"]


def q_function(x):
    """Gaussian tail ``Q(x) = P(N(0, 1) > x) = erfc(x / sqrt(2)) / 2``."""
    return 0.5 * erfc(np.asarray(x, dtype=np.float64) / math.sqrt(2.0))


def db2lin(db):
    return 10.0 ** (np.asarray(db, dtype=np.float64) / 10.0)


def ber_bpsk_awgn(ebn0_db):
    """BPSK (and Gray QPSK) over AWGN: ``Q(sqrt(2 Eb/N0))``."""
    return q_function(np.sqrt(2.0 * db2lin(ebn0_db)))


def ber_qam_awgn_approx(order: int, ebn0_db):
    """Standard approximation for Gray M-QAM: ``4/log2 M (1 - 1/sqrt M) Q(sqrt(3 log2 M / (M-1) Eb/N0))``.

    Exact for QPSK (``M = 4``); for ``M = 2`` returns the BPSK formula."""
    if order == 2:
        return ber_bpsk_awgn(ebn0_db)
    m = math.log2(order)
    g = db2lin(ebn0_db)
    return 4.0 / m * (1.0 - 1.0 / math.sqrt(order)) * q_function(np.sqrt(3.0 * m / (order - 1) * g))


def _qam_terms(order: int) -> list[tuple[float, float]]:
    """Weights ``w_j`` and factors ``c_j`` with exact ``P_b = sum_j w_j erfc(c_j sqrt(Eb/N0))`` (Cho-Yoon)."""
    if order == 2:
        return [(0.5, 1.0)]
    side = math.isqrt(order)
    if side * side != order:
        raise ValueError(f"exact BER is implemented for square M-QAM, not M={order}")
    m = math.log2(order)
    levels = int(math.log2(side))
    scale = math.sqrt(3.0 * m / (2.0 * (order - 1)))
    terms: dict[float, float] = {}
    for k in range(1, levels + 1):
        for i in range(int((1 - 2.0**-k) * side)):
            v = math.floor(i * 2 ** (k - 1) / side)
            w = (-1) ** v * (2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / side + 0.5)) / side / levels
            c = (2 * i + 1) * scale
            terms[c] = terms.get(c, 0.0) + w
    return [(w, c) for c, w in terms.items() if w != 0.0]


def ber_qam_awgn(order: int, ebn0_db):
    """Exact BER of Gray-coded square M-QAM (and BPSK, ``M = 2``) over AWGN (Cho-Yoon 2002)."""
    g = db2lin(ebn0_db)
    return sum(w * erfc(c * np.sqrt(g)) for w, c in _qam_terms(order))


def ber_bpsk_rayleigh(ebn0_db):
    """BPSK (and Gray QPSK) over flat Rayleigh fading with coherent detection: ``(1 - sqrt(g/(1+g))) / 2``."""
    g = db2lin(ebn0_db)
    return 0.5 * (1.0 - np.sqrt(g / (1.0 + g)))


def _diversity_average(gamma, branches: int):
    """``E[Q(sqrt(2 gamma X))]`` for ``X`` a sum of ``branches`` unit exponentials (Proakis 14.4-15)."""
    mu = np.sqrt(gamma / (1.0 + gamma))
    total = sum(comb(branches - 1 + k, k) * ((1.0 + mu) / 2.0) ** k for k in range(branches))
    return ((1.0 - mu) / 2.0) ** branches * total


def ber_bpsk_diversity(ebn0_db, branches: int = 1):
    """BPSK (and Gray QPSK) with ``branches``-fold Rayleigh diversity (MRC, or ZF MIMO with
    ``branches = N_r - N_s + 1``); ``branches = 1`` is :func:`ber_bpsk_rayleigh`."""
    return _diversity_average(db2lin(ebn0_db), branches)


def ber_qam_fading(order: int, ebn0_db, branches: int = 1):
    """Exact BER of Gray square M-QAM over i.i.d. Rayleigh with ``branches``-fold diversity: each
    ``erfc(c sqrt(g))`` term of :func:`ber_qam_awgn` averaged as ``2 E[Q(sqrt(2 c^2 g X))]``."""
    g = db2lin(ebn0_db)
    return sum(w * 2.0 * _diversity_average(c * c * g, branches) for w, c in _qam_terms(order))


def theory_ber(modulation: str, channel: str, ebn0_db, *, diversity: int = 1):
    """The exact uncoded BER of ``modulation`` over ``channel`` at ``ebn0_db``, or ``None`` when there is
    no closed form here (MIMO with LMMSE). ``diversity`` is ``N_r - N_s + 1`` for ZF MIMO; ``bsc`` is the
    hard-decision AWGN channel, so its BER is the AWGN one."""
    from semcom.phy.modulation import MODULATIONS

    order = MODULATIONS[modulation].order
    if channel in ("awgn", "bsc"):
        return ber_qam_awgn(order, ebn0_db)
    if channel == "rayleigh":
        return ber_qam_fading(order, ebn0_db, 1)
    if channel == "mimo-zf":
        return ber_qam_fading(order, ebn0_db, diversity)
    return None
