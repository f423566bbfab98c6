"""Matched fidelity: calibrate tau so that PSNR lands within +-tol of a target (Hopfield paper, Section IV).

The paper compares rules "under matched reconstruction fidelity: we calibrate
the similarity threshold tau for each method such that the PSNR of the
reconstructed video falls within a +-0.2 dB range". PSNR is a non-decreasing
step function of tau (a higher tau misses more and sends more latents), so a
bisection finds the smallest tau whose PSNR reaches ``target - tol``: the
cheapest operating point that is matched. A rule whose PSNR tau cannot move
into the window is reported unmatched, with the reason, never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    """The tau found, the PSNR it gives, whether it lies within the window, and why not."""

    tau: float
    psnr_db: float
    target_db: float
    matched: bool
    reason: str | None
    evaluations: int


def calibrate_tau(psnr_at: Callable[[float], float], target_db: float, tol_db: float = 0.2,
                  lo: float = 0.5, hi: float = 0.9999, iters: int = 20) -> Calibration:
    """Smallest tau in [lo, hi] with ``psnr_at(tau) >= target - tol``, found by bisection.

    Matched iff that PSNR is also ``<= target + tol``. ``psnr_at`` is evaluated ``iters + 2`` times at most.
    """
    p_lo, p_hi = psnr_at(lo), psnr_at(hi)
    n = 2
    if abs(p_hi - p_lo) < 1e-9 and abs(p_hi - target_db) > tol_db:
        return Calibration(hi, p_hi, target_db, False,
                           f"tau does not move PSNR ({p_hi:.2f} dB at tau={lo} and at tau={hi})", n)
    if p_hi < target_db - tol_db:
        return Calibration(hi, p_hi, target_db, False,
                           f"PSNR reaches only {p_hi:.2f} dB at tau={hi}, below {target_db - tol_db:.2f} dB", n)
    if p_lo >= target_db - tol_db:
        ok = p_lo <= target_db + tol_db
        return Calibration(lo, p_lo, target_db, ok, None if ok else
                           f"PSNR is already {p_lo:.2f} dB at the lowest tau={lo}, above the window", n)
    a, b, p_b = lo, hi, p_hi  # invariant: psnr(a) < target - tol <= psnr(b)
    for _ in range(iters):
        mid = 0.5 * (a + b)
        p = psnr_at(mid)
        n += 1
        if p >= target_db - tol_db:
            b, p_b = mid, p
        else:
            a = mid
    ok = p_b <= target_db + tol_db
    reason = None if ok else (f"PSNR jumps from below {target_db - tol_db:.2f} dB to {p_b:.2f} dB "
                              f"between tau={a:.6f} and tau={b:.6f}: no tau lands in the window")
    return Calibration(b, p_b, target_db, ok, reason, n)
