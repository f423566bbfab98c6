"""The anchors over the content regimes: bits per frame of each codec at matched PSNR.

:func:`anchor_table` renders each regime's clip (:func:`semcom.sources.regime_clip`),
and for each codec and target PSNR runs :func:`semcom.anchors.matched.match_psnr`,
sharing the encodes between targets. Run as a script to print the table::

    python -m semcom.anchors.survey --targets 19.5 25 [--regimes static ...] [--codecs h264 ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from semcom.anchors.codecs import CODECS, Codec, EncodedClip, get_codec
from semcom.anchors.matched import match_psnr
from semcom.sources import REGIMES, regime_clip, scenario_of


class _Timed(Codec):
    """Delegates to a codec and adds up the wall time of its encodes (each includes the decode)."""

    def __init__(self, codec: Codec):
        self.inner = codec
        self.name, self.param_name, self.param_range = codec.name, codec.param_name, codec.param_range
        self.higher_is_better, self.integer = codec.higher_is_better, codec.integer
        self.seconds, self.calls = 0.0, 0

    def is_available(self) -> bool:
        return self.inner.is_available()

    def _encode(self, frames: np.ndarray, quality: float) -> EncodedClip:
        t0 = time.perf_counter()
        try:
            return self.inner.encode(frames, quality)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def _per_frame_bits(value: Any, frames: int) -> float | None:
    return None if value is None else 8 * value / frames


def anchor_table(regimes: Iterable[str] = REGIMES, targets: Sequence[float] = (19.5, 25.0),
                 codecs: Iterable[str | Codec] | None = None, frames: int | None = None, height: int = 64,
                 width: int = 64, seed: int = 0, tol_db: float = 0.2, progress=None) -> list[dict[str, Any]]:
    """One row per (regime, codec, target): the codec at matched PSNR on that regime's clip.

    ``codecs`` defaults to every available codec (:data:`semcom.anchors.CODECS`); ``frames``
    to each regime's default length. Rows carry ``regime``, ``scenario``, ``codec``,
    ``target_db``, ``param_name``, ``param``, ``psnr_db``, ``ssim``, ``bits_per_frame``,
    ``matched``, ``reason``, the fallback ``at_least_target_*`` (cheapest point tried with
    PSNR >= target, for unmatched rows), ``container_bits_per_frame`` (the stream in Matroska,
    video codecs), ``header_bits_per_frame`` (image file headers, Pillow codecs),
    ``evaluations`` (encodes looked at for this target), ``encodes``/``seconds_per_encode``
    (for the regime and codec, shared by the targets: one encode and decode of the whole clip)
    and ``seconds`` (this target's search, SSIM included). ``progress`` is called with
    each row as it is made.
    """
    chosen = [get_codec(c) for c in (CODECS.values() if codecs is None else codecs)]
    rows: list[dict[str, Any]] = []
    for regime in regimes:
        clip = regime_clip(regime, seed=seed, frames=frames, height=height, width=width)
        t = int(clip.shape[0])
        for codec in chosen:
            timed = _Timed(codec)
            cache: dict[float, EncodedClip] = {}
            pending = []
            for target in targets:
                t0 = time.perf_counter()
                r = match_psnr(timed, clip, target, tol_db=tol_db, cache=cache)
                pending.append((r, time.perf_counter() - t0))
            for r, seconds in pending:
                d = r.details
                header = d.get("header_bytes")
                row = {
                    "regime": regime, "scenario": scenario_of(regime), "codec": codec.name,
                    "frames": t, "height": height, "width": width,
                    "target_db": float(r.target_db), "tol_db": r.tol_db,
                    "param_name": r.param_name, "param": r.param,
                    "psnr_db": r.psnr_db, "ssim": r.ssim, "bits_per_frame": r.bits_per_frame,
                    "matched": r.matched, "reason": r.reason,
                    "at_least_target_param": None if r.at_least_target is None else r.at_least_target.param,
                    "at_least_target_psnr_db": None if r.at_least_target is None else r.at_least_target.psnr_db,
                    "at_least_target_bits_per_frame":
                        None if r.at_least_target is None else r.at_least_target.bits_per_frame,
                    "container_bits_per_frame": _per_frame_bits(d.get("container_bytes"), t),
                    "header_bits_per_frame": _per_frame_bits(header, t),
                    "evaluations": r.evaluations, "encodes": timed.calls,
                    "seconds_per_encode": timed.seconds / max(timed.calls, 1), "seconds": seconds,
                }
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`anchor_table` rows."""
    head = ("regime", "codec", "target", "param", "PSNR", "SSIM", "bits/frame", "matched", "fallback b/f",
            "mkv b/f", "s/encode")
    lines = [head]
    for r in rows:
        lines.append((r["regime"], r["codec"], _fmt(r["target_db"]), f"{r['param_name']} {_fmt(r['param'], 'g')}",
                      _fmt(r["psnr_db"], ".2f"), _fmt(r["ssim"], ".3f"), _fmt(r["bits_per_frame"]),
                      "yes" if r["matched"] else "NO", _fmt(r["at_least_target_bits_per_frame"]),
                      _fmt(r["container_bits_per_frame"]), _fmt(r["seconds_per_encode"], ".3f")))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    notes = [f"  {r['regime']}/{r['codec']}/{r['target_db']:g}: {r['reason']}" for r in rows if r["reason"]]
    return "\n".join(out + (["unmatched:"] + notes if notes else []))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m semcom.anchors.survey", description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    ap.add_argument("--targets", nargs="+", type=float, default=[19.5, 25.0])
    ap.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=0.2)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = anchor_table(args.regimes, args.targets, args.codecs, frames=args.frames, seed=args.seed, tol_db=args.tol)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(format_table(rows))
        print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
