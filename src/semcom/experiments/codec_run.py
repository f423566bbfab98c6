"""``semcom run --model NAME --quality Q`` for a spatial model: the regimes through the codec link.

Every regime is streamed twice through :mod:`semcom.schemes.codec_link` at the same quality: with the
shared memory (hits, per-tile hits and conditional misses) and with the memory off (every frame intra,
the codec alone), so the table shows what the memory saves. Bits are the stream files' lengths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from semcom.metrics import ms_ssim, psnr
from semcom.schemes.codec_link import CodecLinkConfig, encode_clip, link_stats

#: The colour of each kind of frame in :func:`figure_frames`' titles.
KIND_COLOURS = {"hit": "green", "inter": "darkorange", "intra": "red", "motion": "blue", "bi": "purple"}


def run_codec_link(regimes: Sequence[str], link: CodecLinkConfig, model, seed: int = 0, frames: int | None = None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Rows per regime and memory setting, per-frame timelines, and the decoded clips of the memory link."""
    from semcom.sources import regime_clip, scenario_of

    rows, timelines, decoded = [], {}, {}
    for regime in regimes:
        clip = regime_clip(regime, seed=seed, frames=frames, height=link.height, width=link.width)
        for memory in (True, False):
            off = {} if memory else {"inter": False, "bframes": 0}  # the codec alone: every frame intra
            data, tx = encode_clip(clip, link.model_copy(update=off), model)
            out = np.stack(tx.decoded)
            rows.append({"scenario": scenario_of(regime), "regime": regime, "memory": "on" if memory else "off",
                         "model": link.model, "quality": link.quality, "tau": link.tau, "frames": len(clip),
                         "bits_per_frame_wire": 8 * len(data) / len(clip), "psnr_db": psnr(clip, out),
                         "ms_ssim": ms_ssim(clip, out), **link_stats(tx.records), "memory_size": tx.memory.size})
            if memory:
                timelines[regime] = [{"t": r.t, "kind": r.kind, "bits": r.bits, "memory_size": r.memory_size}
                                     for r in tx.records]
                decoded[regime] = (clip, out)
        if progress:
            progress(regime)
    saving = {}
    for regime in regimes:
        on, off = (next(r for r in rows if r["regime"] == regime and r["memory"] == m) for m in ("on", "off"))
        saving[regime] = 1.0 - on["bits_per_frame_wire"] / off["bits_per_frame_wire"]
    return {"rows": rows, "saving": saving, "timelines": timelines, "decoded": decoded}


def figure_frames(decoded: dict, timelines: dict, out, regime: str | None = None) -> list:
    """Original (top) and decoded (bottom) frames of one regime, with each frame's kind and bits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semcom.report.figures import save_figure

    regime = regime if regime in decoded else next(iter(decoded))
    clip, out_frames = decoded[regime]
    picks = np.linspace(0, len(clip) - 1, 6).round().astype(int)
    fig, axes = plt.subplots(2, len(picks), figsize=(1.8 * len(picks), 4.0))
    for col, t in enumerate(picks):
        rec = timelines[regime][t]
        axes[0, col].imshow(clip[t])
        axes[0, col].set_title(f"t={t}", fontsize=8)
        axes[1, col].imshow(out_frames[t])
        axes[1, col].set_title(f"{rec['kind']}, {rec['bits']:.0f} b", fontsize=8,
                               color=KIND_COLOURS[rec["kind"]])
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{regime}: original (top), decoded from the bits (bottom)", fontsize=9)
    return [save_figure(fig, out / "frames.png")]
