"""The semantic link over the air: PSNR, bits and channel uses per frame against SNR (``link-snr``).

Both rules stream the same clips through :class:`semcom.link.air.OverTheAir`
(16-QAM, rate-1/2 5G LDPC, AWGN or Rayleigh block fading, stop-and-wait ARQ);
a frame lost after every attempt is shown as the receiver's previous frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from semcom.config import DEFAULT_BETA, DEFAULT_TAU, LinkConfig  # noqa: E402
from semcom.experiments.semantic_link import encode_clip  # noqa: E402
from semcom.frames import to_uint8  # noqa: E402
from semcom.link import Receiver, Transmitter  # noqa: E402
from semcom.link.air import OverTheAir  # noqa: E402
from semcom.metrics import mse  # noqa: E402

REGIMES = ("illum_change", "cam_shake", "high_motion")
CHANNELS = ("awgn", "rayleigh")
RULES = ("nearest", "hopfield")


def snr_grid(quick: bool) -> tuple[float, ...]:
    return (0.0, 4.0, 6.0, 8.0, 12.0) if quick else (0.0, 2.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)


def stream_over_air(frames: np.ndarray, latents: torch.Tensor, link: LinkConfig, model, phy, snr_db: float,
                    max_attempts: int) -> dict:
    """One clip through one rule at one SNR; totals for the row."""
    tx, rx = Transmitter(link), Receiver(link)
    air = OverTheAir(tx, rx, phy, max_attempts, snr_db)
    shown, held = [], None
    uses = fwd = fb = lost = attempts = hits = 0
    for z in latents:
        got, rec = air.step(z)
        held = got if got is not None else held
        shown.append(held)
        uses, fwd, fb = uses + rec.channel_uses, fwd + rec.forward_bits, fb + rec.feedback_bits
        lost, attempts = lost + (not rec.delivered), attempts + rec.attempts
        hits += bool(tx.last.hit) and rec.delivered
    grey = torch.zeros(link.d)
    with torch.no_grad():
        decoded = to_uint8(model.decoder(torch.stack([s if s is not None else grey for s in shown])))
    if shown[0] is None:  # nothing received yet: a mid-grey frame
        first = next((i for i, s in enumerate(shown) if s is not None), len(shown))
        decoded[:first] = 128
    return {"frames": len(frames), "mse_sum": mse(frames, decoded) * len(frames), "channel_uses": uses,
            "forward_bits": fwd, "feedback_bits": fb, "lost": lost, "attempts": attempts, "hits": hits}


def run_link_snr(model, quick: bool = False, **kw) -> dict:
    """Every (channel, rule, SNR) row; torch runs on one thread here: the per-frame Sionna blocks are small,
    and two threads made them 3-6x slower on the 2-core machine (measured: 10 ms vs 63 ms per miss packet)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_link_snr(model, quick, **kw)
    finally:
        torch.set_num_threads(threads)


def _run_link_snr(model, quick: bool = False, seed: int = 0, frames: int | None = None, max_attempts: int = 4,
                 modulation: str = "qam16", code: str = "ldpc-1/2",
                 progress: Callable[[str], None] | None = None) -> dict:
    from semcom.phy import DigitalLink

    hp = model.hparams
    clips = [encode_clip(model, r, seed, frames or (36 if quick else None)) for r in REGIMES]
    rows = []
    for channel in CHANNELS:
        phy = DigitalLink(modulation, channel, code, snr_db=10.0, seed=seed, fit_codeword=True)
        for rule in RULES:
            link = LinkConfig(rule=rule, tau=DEFAULT_TAU, beta=DEFAULT_BETA, d=hp["d"], height=hp["height"],
                              width=hp["width"])
            for snr in snr_grid(quick):
                tot: dict = {}
                for f, z in clips:
                    for k, v in stream_over_air(f, z, link, model, phy, snr, max_attempts).items():
                        tot[k] = tot.get(k, 0) + v
                n = tot["frames"]
                rows.append({"channel": channel, "modulation": modulation, "code": code, "rule": rule,
                             "snr_db": snr, "frames": n, "psnr_db": float(10 * np.log10(n / tot["mse_sum"])),
                             "bits_per_frame_wire": tot["forward_bits"] / n,
                             "feedback_bits_per_frame": tot["feedback_bits"] / n,
                             "channel_uses_per_frame": tot["channel_uses"] / n, "lost_frames": tot["lost"],
                             "attempts_per_frame": tot["attempts"] / n, "hit_rate": tot["hits"] / n})
            if progress:
                progress(f"{channel}/{rule}")
    return {"rows": rows, "regimes": list(REGIMES), "max_attempts": max_attempts}


def figure(results: dict, out: Path) -> Path:
    """PSNR and channel uses per frame against SNR, per channel and rule."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    styles = {"nearest": "o-", "hopfield": "^--"}
    for channel, colour in zip(CHANNELS, ("#1f77b4", "#d62728")):
        for rule in RULES:
            rs = [r for r in results["rows"] if r["channel"] == channel and r["rule"] == rule]
            x = [r["snr_db"] for r in rs]
            label = f"{channel}, {rule}"
            axes[0].plot(x, [r["psnr_db"] for r in rs], styles[rule], color=colour, label=label)
            axes[1].plot(x, [r["channel_uses_per_frame"] for r in rs], styles[rule], color=colour, label=label)
            axes[2].plot(x, [r["lost_frames"] / r["frames"] for r in rs], styles[rule], color=colour, label=label)
    for ax, ylabel in zip(axes, ("PSNR (dB)", "channel uses per frame", "fraction of frames lost")):
        ax.set(xlabel="SNR Es/N0 (dB)", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("semantic link over 16-QAM, LDPC 1/2, stop-and-wait ARQ", fontsize=10)
    fig.tight_layout()
    path = out / "link_snr.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
