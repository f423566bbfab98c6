"""The main job: the eight content regimes through every decision rule (``semcom run``).

Each clip streams through a real :class:`Transmitter` and :class:`Receiver`
that share nothing but the bytes; the bits are the length of those bytes,
the fidelity is measured on what the receiver decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from semcom.config import (
    DEFAULT_BETA,
    DEFAULT_TAU,
    Coding,
    FaultConfig,
    FullPolicy,
    LinkConfig,
    ProtectionConfig,
    RuleName,
    validated,
)
from semcom.errors import WireFormatError
from semcom.link import Receiver, Transmitter
from semcom.link.endpoints import FrameRecord
from semcom.link.wire import HEADER_SIZE, TRAILER_SIZE, StreamHeader, pack_stream
from semcom.metrics import (
    compression_ratio,
    mse,
    psnr_per_frame,
    raw_bits_per_frame,
    reasoning_capacity,
    semantic_efficiency,
    ssim,
)
from semcom.models import SphericalAutoencoder, fingerprint
from semcom.sources import REGIMES, regime_clip, scenario_of


class RunConfig(BaseModel):
    """Configuration of ``semcom run`` (validated at the door)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[RuleName, ...] = ("nearest", "hopfield", "paper")
    regimes: tuple[str, ...] = REGIMES
    tau: float = Field(DEFAULT_TAU, gt=0.0, lt=1.0)
    beta: float = Field(DEFAULT_BETA, gt=0.0, le=1e6)
    m_max: int = Field(256, ge=1)
    full_policy: FullPolicy = "lru"
    coding: Coding = "fixed"
    residual_bits: int = Field(0, ge=0, le=8)
    tau_refine: float = Field(0.995, gt=0.0, lt=1.0)
    top_k: int = Field(4, ge=1, le=64)
    index: Literal["exact", "approx"] = "exact"
    seed: int = 0
    frames: int | None = Field(None, ge=1, le=100000)
    b_raw_bits: int | None = Field(None, ge=1, description="B_raw per frame; default H*W*3*8")
    omega: float = Field(1.0, gt=0.0)
    channel: Literal["awgn", "rayleigh", "bsc", "mimo"] | None = None
    snr_db: float = Field(10.0, ge=-50.0, le=100.0)
    modulation: Literal["bpsk", "qpsk", "qam16", "qam64"] = "qam16"
    code: str = "ldpc-1/2"
    max_attempts: int = Field(4, ge=1, le=64)
    video_regime: str = "illum_change"
    video_rule: RuleName = "hopfield"
    protection: ProtectionConfig | None = None   # protected packets (cues, checksums, memory checks)
    faults: FaultConfig = FaultConfig()

    @property
    def protected(self) -> bool:
        return self.protection is not None or self.faults.active

    @model_validator(mode="after")
    def _one_link(self):
        if self.protected and self.channel is not None:
            raise ValueError("faults and cues (--ber, --erasure-rate, --corrupt-*, --cue-bits) act on the packet "
                             "link; they do not combine with --channel")
        if self.protected and self.coding != "fixed":
            raise ValueError("protected packets use fixed-length coding (drop --coding adaptive)")
        return self

    def link(self, rule: str, d: int, height: int, width: int) -> LinkConfig:
        return validated(LinkConfig, rule=rule, tau=self.tau, beta=self.beta, m_max=self.m_max, d=d,
                         full_policy=self.full_policy, coding=self.coding, top_k=self.top_k,
                         residual_bits=self.residual_bits, tau_refine=self.tau_refine, height=height, width=width,
                         index=self.index)


@dataclass
class StreamResult:
    """One clip through one rule: per-frame records, the decoded frames, the stream's size."""

    records: list[FrameRecord]
    decoded: np.ndarray
    stream_bytes: int
    extra: dict = field(default_factory=dict)
    wire_bits: int | None = None   # every bit on the links, when it is not 8 * stream_bytes (feedback too)
    session: bytes | None = None   # the session file of a recorded protected link


def stream_latents(latents: torch.Tensor, link: LinkConfig, model: SphericalAutoencoder) -> StreamResult:
    """Encode pre-computed latents into a stream, decode it with a separate receiver from the bytes alone,
    and check that the two memories agree after every frame."""
    wid = fingerprint(model)
    tx = Transmitter(link, model.encoder, wid)
    writer = tx.stream_writer()
    records, tx_digests = [], []
    for z in latents:
        tx.send_to_stream(z, writer)
        records.append(tx.last)
        tx_digests.append(tx.memory.digest())
    data = pack_stream(tx.header(len(latents)), writer.getvalue())
    rx, header = Receiver.from_header(data[:HEADER_SIZE], model.decoder, wid)
    received = []
    for t, latent in enumerate(rx.iter_stream(data, header.frames)):
        if rx.memory.digest() != tx_digests[t]:
            raise WireFormatError(f"memories diverged at frame {t}")
        received.append(latent)
    return StreamResult(records, rx.decode(torch.stack(received)), len(data))


def stream_over_air(latents: torch.Tensor, link: LinkConfig, model: SphericalAutoencoder, phy,
                    snr_db: float | None = None, max_attempts: int = 4) -> StreamResult:
    """Packets over a digital link with ARQ (:class:`semcom.link.air.OverTheAir`). A frame lost after every
    attempt is shown as the receiver's previous frame (mid-grey before the first); ``stream_bytes`` counts
    every attempt; ``extra`` holds channel uses, attempts, lost frames and feedback bits."""
    from semcom.link.air import OverTheAir

    tx, rx = Transmitter(link), Receiver(link, model.decoder)
    air = OverTheAir(tx, rx, phy, max_attempts, snr_db)
    got, records, air_records = [], [], []
    for z in latents:
        latent, rec = air.step(z)
        got.append(latent)
        records.append(tx.last)
        air_records.append(rec)
    decoded = shown_frames(hold_last(got), rx, link.d)
    n = len(latents)
    extra = {"channel_uses_per_frame": sum(r.channel_uses for r in air_records) / n,
             "attempts_per_frame": sum(r.attempts for r in air_records) / n,
             "feedback_bits_per_frame": sum(r.feedback_bits for r in air_records) / n,
             "lost_frames": sum(not r.delivered for r in air_records)}
    return StreamResult(records, decoded, sum(r.forward_bits for r in air_records) // 8, extra=extra)


def shown_frames(held: list[torch.Tensor | None], rx: Receiver, d: int) -> np.ndarray:
    """Decoded frames, each frame lost for good shown as the previous one (mid-grey before the first)."""
    grey = torch.zeros(d)
    decoded = rx.decode(torch.stack([s if s is not None else grey for s in held]))
    first = next((i for i, s in enumerate(held) if s is not None), len(held))
    decoded[:first] = 128
    return decoded


def stream_protected(latents: torch.Tensor, link: LinkConfig, model: SphericalAutoencoder,
                     protection: ProtectionConfig, faults: FaultConfig, record: bool = False) -> StreamResult:
    """Protected packets over a faulty channel with feedback (:class:`semcom.link.session.ProtectedLink`).
    ``stream_bytes`` counts every forward packet, ``wire_bits`` adds the feedback; each record's paper bits
    include cues, requests and repairs; ``extra`` holds :func:`semcom.link.session.fault_summary`.
    ``record``: also keep the session file (:mod:`semcom.link.transcript`) in ``session``."""
    from semcom.link import transcript
    from semcom.link.session import ProtectedLink, fault_summary

    pl = ProtectedLink(link, protection, faults, model.decoder, record=record)
    decoded, records, session = [], [], []
    for z in latents:
        latent, rec = pl.step(z)
        decoded.append(latent)
        records.append(replace(pl.tx.record, paper_bits=rec.paper_bits))
        session.append(rec)
    forward = sum(r.forward_bits for r in session)
    shown = shown_frames(hold_last(decoded), pl.rx.rx, link.d)
    result = StreamResult(records, shown, forward // 8, extra=fault_summary(session),
                          wire_bits=forward + sum(r.feedback_bits for r in session))
    if record:
        header = StreamHeader(link, len(latents), fingerprint(model), session=True).to_bytes()
        result.session = transcript.pack_session(header, transcript.session_block(protection, faults), pl.log)
    return result


def encode_clip(model: SphericalAutoencoder, regime: str, seed: int = 0,
                frames: int | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """The frames of ``regime`` at the model's size and their latents ``z = f_theta(x)``."""
    hp = model.hparams
    clip = regime_clip(regime, seed=seed, frames=frames, height=hp["height"], width=hp["width"])
    return clip, encode_frames(model, clip)


@torch.no_grad()
def encode_frames(model: SphericalAutoencoder, frames: np.ndarray, batch: int = 64) -> torch.Tensor:
    """``z = f_theta(x)`` for uint8 frames (T, H, W, 3), in batches -> (T, d)."""
    from semcom.frames import to_tensor

    return torch.cat([model.encoder(to_tensor(frames[i : i + batch])) for i in range(0, len(frames), batch)])


def hold_last(latents: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """What a receiver shows: each dropped frame (None) replaced by the last one decoded before it."""
    held, last = [], None
    for z in latents:
        last = z if z is not None else last
        held.append(last)
    return held


def clip_metrics(frames: np.ndarray, result: StreamResult, b_raw: int, omega: float = 1.0,
                 with_ssim: bool = True) -> dict:
    """Every figure of a row, from its definition (Section II-C and III-B, eqs. 3 and 5).

    ``with_ssim=False`` skips SSIM (NaN), the slow part, for calibration loops."""
    t = len(result.records)
    hits = sum(r.hit for r in result.records)
    paper_total = sum(r.paper_bits for r in result.records)
    wire_total = 8 * result.stream_bytes if result.wire_bits is None else result.wire_bits
    packet_total = sum(r.packet_bits for r in result.records)
    return _derived(t, hits, paper_total, wire_total, b_raw, omega, packet_total=packet_total,
                    mse_sum=mse(frames, result.decoded) * t,
                    ssim_sum=ssim(frames, result.decoded) * t if with_ssim else float("nan"),
                    memory_size=result.records[-1].memory_size,
                    new_latents=t - hits)


def _derived(frames: int, hits: int, paper_total: int, wire_total: int, b_raw: int, omega: float,
             packet_total: int, mse_sum: float, ssim_sum: float, memory_size: int, new_latents: int) -> dict:
    hit_rate = hits / frames
    bpf_paper, bpf_wire = paper_total / frames, wire_total / frames
    gamma, gamma_p = compression_ratio(b_raw, bpf_wire), compression_ratio(b_raw, bpf_paper)
    eta, eta_p = semantic_efficiency(hit_rate, gamma), semantic_efficiency(hit_rate, gamma_p)
    mse_mean = mse_sum / frames
    return {
        "frames": frames, "hits": hits, "new_latents": new_latents, "memory_size": memory_size,
        "bits_paper": paper_total, "bits_wire": wire_total, "bits_packet": packet_total,
        "b_raw_bits_per_frame": b_raw, "bits_per_frame_paper": bpf_paper, "bits_per_frame_wire": bpf_wire,
        "bits_per_frame_packet": packet_total / frames, "hit_rate": hit_rate,
        "compression_ratio": gamma, "semantic_efficiency": eta, "reasoning_capacity": reasoning_capacity(eta, omega),
        "compression_ratio_paper": gamma_p, "semantic_efficiency_paper": eta_p,
        "reasoning_capacity_paper": reasoning_capacity(eta_p, omega),
        "mse": mse_mean, "psnr_db": float(10 * np.log10(1.0 / max(mse_mean, 1e-12))), "ssim": ssim_sum / frames,
    }


def summarise(rows: Sequence[dict], omega: float = 1.0) -> list[dict]:
    """Pool rows per (scenario, rule): totals over frames, then every ratio recomputed from them."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["rule"]), []).append(r)
    out = []
    for (scenario, rule), rs in groups.items():
        frames = sum(r["frames"] for r in rs)
        s = _derived(frames, sum(r["hits"] for r in rs), sum(r["bits_paper"] for r in rs),
                     sum(r["bits_wire"] for r in rs), rs[0]["b_raw_bits_per_frame"], omega,
                     packet_total=sum(r["bits_packet"] for r in rs),
                     mse_sum=sum(r["mse"] * r["frames"] for r in rs),
                     ssim_sum=sum(r["ssim"] * r["frames"] for r in rs),
                     memory_size=max(r["memory_size"] for r in rs),
                     new_latents=sum(r["new_latents"] for r in rs))
        out.append({"scenario": scenario, "regime": "+".join(r["regime"] for r in rs), "rule": rule,
                    "tau": rs[0]["tau"], "beta": rs[0]["beta"], **s})
    return out


def timeline(result: StreamResult, frames: np.ndarray) -> dict:
    """Per-frame series for the figures: hit, wire and paper bits, memory size, PSNR."""
    return {"hit": [int(r.hit) for r in result.records],
            "bits_wire": [r.wire_bits for r in result.records],
            "bits_paper": [r.paper_bits for r in result.records],
            "memory_size": [r.memory_size for r in result.records],
            "psnr_db": [round(float(p), 3) for p in psnr_per_frame(frames, result.decoded)]}


def run_semantic_link(cfg: RunConfig, model: SphericalAutoencoder,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Stream every regime through every rule; returns the run's results (rows, summary, timelines).

    ``video`` holds the frames of ``cfg.video_regime`` under ``cfg.video_rule`` (or the first regime and
    rule run, when those are not among them) for the report.
    """
    hp = model.hparams
    b_raw = cfg.b_raw_bits or raw_bits_per_frame(hp["height"], hp["width"])
    rows, timelines, video = [], {}, None
    video_regime = cfg.video_regime if cfg.video_regime in cfg.regimes else cfg.regimes[0]
    video_rule = cfg.video_rule if cfg.video_rule in cfg.rules else cfg.rules[0]
    phy = None
    if cfg.channel is not None:
        from semcom.phy import DigitalLink

        phy = DigitalLink(cfg.modulation, cfg.channel, cfg.code, snr_db=cfg.snr_db, seed=cfg.seed,
                          fit_codeword=True)
    for regime in cfg.regimes:
        frames, latents = encode_clip(model, regime, cfg.seed, cfg.frames)
        for rule in cfg.rules:
            link = cfg.link(rule, hp["d"], hp["height"], hp["width"])
            if cfg.protected:
                result = stream_protected(latents, link, model, cfg.protection or ProtectionConfig(),
                                          cfg.faults.for_clip(len(latents)))
            elif phy is not None:
                result = stream_over_air(latents, link, model, phy, cfg.snr_db, cfg.max_attempts)
            else:
                result = stream_latents(latents, link, model)
            rows.append({"scenario": scenario_of(regime), "regime": regime, "rule": rule, "tau": link.tau,
                         "beta": link.beta, **clip_metrics(frames, result, b_raw, cfg.omega), **result.extra})
            timelines[f"{regime}/{rule}"] = timeline(result, frames)
            if regime == video_regime and rule == video_rule:
                video = {"regime": regime, "rule": rule, "original": frames, "decoded": result.decoded,
                         "hit": [r.hit for r in result.records]}
            if progress is not None:
                progress(f"{regime}/{rule}")
    return {"rows": rows, "summary": summarise(rows, cfg.omega), "timelines": timelines,
            "header_bits": 8 * (HEADER_SIZE + TRAILER_SIZE), "video": video}
