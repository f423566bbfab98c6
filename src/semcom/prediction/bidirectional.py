"""Bidirectional prediction: a frame between two frames already shown, predicted from both (a B-frame).

The transmitter holds back up to ``B`` frames, codes the frame after them first (the group's *anchor frame*, in
any of the codec link's kinds), then each frame held back from two frames coded around it, ``P`` before and ``N``
after (for the first, the frame shown before the group and the anchor frame; the pyramid below). A frame
``i`` frames after ``P`` and ``j`` frames before ``N`` is predicted per pixel ``p`` by

    ``x_pred(p) = (w_P(p) warp(P, theta_P)(p) + w_N(p) warp(N, theta_N)(p)) / (w_P(p) + w_N(p))``         (2)

``warp`` the global motion of eq. (1) of :mod:`semcom.prediction.global_motion`, and ``w`` 1 where that motion
samples inside its reference frame and 0 where it would replicate the border (both 0: one half each), so content
that enters the frame comes from the reference that has it. The modes (:data:`MODES`) are *forward* (``w_N = 0``),
*backward* (``w_P = 0``) and *bi*: H.264's list-0, list-1 and bi-predicted B-slices with the average as the
weighted prediction. A B-frame is a reference only of the later B-frames of its group: it neither touches the
memory nor becomes a motion frame's anchor. On aliased texture that pans, two references whose errors differ
average to a better prediction than either (measured in docs/rd.md).

The B-frames of a group are coded as a pyramid (:func:`pyramid`, H.264's hierarchical B-frames): the middle one
first, from the frames around the group, then each half the same way, a coded B-frame serving as a reference of
the B-frames beside it, so most of them predict from frames one step away (against coding every B-frame from the
group's two ends: BD-rate -6 % on ``heldout_fast_pan``, -2 to +2 % on the other clips measured; docs/rd.md).

The two motions are coded as the error of a prediction linear in time (:class:`ScaledMotionCoder`): both ends
keep ``u``, the last B-frame motion divided by its distance in frames, and predict ``round(d u)`` for a motion
over ``d`` frames (``-i`` forward, ``+j`` backward), so a steady pan costs a few bits per B-frame.
"""

from __future__ import annotations

import numpy as np
import torch

from semcom.prediction.global_motion import BOUND, PARAMS, MotionCoder, dequantise, inside, warp

__all__ = ["B_WEIGHT", "FORWARD", "BACKWARD", "BI", "MODES", "ScaledMotionCoder", "bi_prediction", "pyramid"]

FORWARD, BACKWARD, BI = 0, 1, 2
MODES = ("forward", "backward", "bi")
#: The weight of a B-frame's squared error in its refinement, relative to the link's ``mu``: its step is
#: ``sqrt 2`` times larger (x264's B-frame quantiser offset, ``pbratio`` 1.3, is about 2.3 QP, a step 1.3 times
#: larger). Measured against 1 on 24-frame clips, q1-q8: BD-rate -0.5 to -2.8 % on ``high_texture``,
#: ``low_motion``, ``high_motion``, ``cam_shake`` and ``heldout_fast_pan``; 0.25 was mixed (-1.5 to +4.7 %).
B_WEIGHT = 0.5


class ScaledMotionCoder(MotionCoder):
    """B-frame motions: ``k`` predicted as ``round(d u)`` for a motion over ``d`` frames (``d`` negative towards
    the past reference), ``u`` the last motion seen divided by its ``d``; errors, escapes and counts as
    :class:`MotionCoder`'s (a pan that turns back is off the prediction by twice its motion)."""

    def __init__(self) -> None:
        super().__init__()
        self.unit = np.zeros(len(PARAMS))
        self.distance = 0

    def prediction(self) -> np.ndarray:
        return np.clip(np.rint(self.unit * self.distance), -BOUND, BOUND).astype(np.int64)

    def update(self, errors: np.ndarray, new_anchor: bool = False) -> None:
        """After a motion over ``distance`` frames: count its symbols and learn the unit motion."""
        k = self.k_of(errors)
        self.counts[np.arange(len(PARAMS)), self._symbols(errors)] += self.INCREMENT
        if self.distance:
            self.unit = k / float(self.distance)


def bi_prediction(mode: int, refs: tuple[torch.Tensor, torch.Tensor], ks: tuple[np.ndarray | None, ...]) -> np.ndarray:
    """Eq. (2): the prediction (uint8 (H, W, 3)) of the B-frame in ``mode`` from the past and future references
    ``refs`` (each (1, 3, H, W) in [0, 1]) under the motions ``ks`` (each (10,) integers; None where ``mode`` does
    not use that reference)."""
    _, _, h, w = refs[0].shape
    used = [(ref, k) for ref, k, on in zip(refs, ks, (mode != BACKWARD, mode != FORWARD)) if on]
    with torch.no_grad():
        moved = [warp(ref, dequantise(k)).clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy() for ref, k in used]
    if len(moved) == 1:
        out = moved[0]
    else:
        weights = np.stack([inside(h, w, dequantise(k)) for _, k in used]).astype(np.float32)
        none = weights.sum(0) == 0
        weights[:, none] = 0.5
        out = (weights[0, ..., None] * moved[0] + weights[1, ..., None] * moved[1]) / weights.sum(0)[..., None]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def pyramid(n: int) -> list[tuple[int, int, int]]:
    """The coding order of a group of ``n`` B-frames, as ``(i, lo, hi)``: the B-frame at position ``i`` (1..n; 0 is
    the frame shown before the group, ``n + 1`` the group's anchor frame) predicted from positions ``lo`` and
    ``hi``, each coded before it. ``pyramid(3)`` is ``[(2, 0, 4), (1, 0, 2), (3, 2, 4)]``."""

    def split(lo: int, hi: int) -> list[tuple[int, int, int]]:
        if hi - lo < 2:
            return []
        mid = (lo + hi) // 2
        return [(mid, lo, hi), *split(lo, mid), *split(mid, hi)]

    return split(0, n + 1)
