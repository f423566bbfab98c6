"""The live link measured: frames per second and latency per frame over loopback against the in-process link,
and the bits spent on feedback under emulated loss (``semcom bench --live``).

:func:`run_live_bench` streams the same clip through the same scheme code four ways, in one run:

* ``in_process`` — the sender's packets handed straight to a receiver session (:mod:`semcom.live.schemes`):
  the link's own cost, no socket, no seal, no thread hop (its bits are the schemes' packets and feedback
  payloads alone, with no framing);
* ``tcp`` and ``udp`` — a real :class:`~semcom.live.server.LiveServer` on loopback (its own event loop and
  thread, :class:`~semcom.live.local.LocalServer`) and the asyncio client;
* ``udp_loss`` — UDP through a :class:`~semcom.live.shim.LossShim` (``loss`` each way, ``delay`` + jitter).

Each row has ``fps`` (frames over wall time), ``latency_ms`` (mean time from a frame in to its ACK),
``bits_per_frame_wire``, ``feedback_bits_per_frame`` (every byte the receiver sent back),
``protocol_feedback_bits_per_frame`` (the Hopfield paper's accounting of it), ``retransmissions``; and
``fps_ratio`` against ``in_process`` (a ratio in the same run, as DESIGN.md asks of benchmarks).
"""

from __future__ import annotations

import asyncio
import tempfile
import time

import numpy as np

from .client import SendConfig, send_frames
from .local import LocalServer
from .server import ServeConfig


def _sender(model_name: str, quality: int | None):
    """A fresh sender of ``model_name`` (sphere64 with default protection, or a spatial model's codec link)."""
    from semcom.config import LinkConfig, ProtectionConfig

    from .schemes import SphereSender, codec_sender

    if model_name == "sphere64":
        from semcom.models import load_autoencoder

        model = load_autoencoder()
        hp = model.hparams
        return SphereSender(model, LinkConfig(d=hp["d"], height=hp["height"], width=hp["width"]),
                            ProtectionConfig())
    from semcom.models.zoo import check_quality, load_model
    from semcom.schemes.codec_link import CodecLinkConfig

    model = load_model(model_name)
    return codec_sender(model, CodecLinkConfig(model=model_name, quality=check_quality(model_name, quality)))


def _receiver(sender):
    from .schemes import SphereSession, codec_session

    kind = SphereSession if sender.scheme == "sphere64" else codec_session
    model = sender.model if sender.scheme == "sphere64" else sender.tx.model
    return kind(sender.header(0), sender.hello(), model)


async def _in_process(sender, frames) -> dict:
    """The link without sockets: each packet straight into a receiver session, its feedback straight back."""
    rx = _receiver(sender)
    feedback_bytes = payload_bytes = 0

    async def exchange(t: int, packet: bytes) -> bytes:
        nonlocal feedback_bytes, payload_bytes
        reply, _ = rx.on_data(t, packet)
        feedback_bytes, payload_bytes = feedback_bytes + len(reply), payload_bytes + len(packet)
        return reply

    latencies, start = [], time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        await sender.send_frame(frame, exchange)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    n = len(frames)
    return {"fps": n / elapsed, "latency_ms": 1000 * float(np.mean(latencies)),
            "bits_per_frame_wire": 8 * payload_bytes / n, "payload_bits_per_frame": 8 * payload_bytes / n,
            "feedback_bits_per_frame": 8 * feedback_bytes / n, "retransmissions": 0}


def _over_socket(sender, frames, transport: str, shim: dict | None) -> dict:
    keys = ("fps", "latency_ms", "bits_per_frame_wire", "payload_bits_per_frame", "feedback_bits_per_frame",
            "protocol_feedback_bits_per_frame", "retransmissions", "lost_frames")
    with tempfile.TemporaryDirectory() as out, LocalServer(ServeConfig(out=out, transport=transport), shim) as srv:
        cfg = SendConfig(port=srv.port, transport=transport, rto=0.02 if shim else 0.1, timeout=20)
        result = asyncio.run(send_frames(cfg, sender, frames))
        row = {k: result.summary[k] for k in keys}
        if srv.shim is not None:
            st = srv.shim.stats
            row["shim"] = {"forwarded": st.forwarded, "lost": st.lost, "duplicated": st.duplicated}
        return row


def run_live_bench(model: str = "sphere64", frames: int = 48, quality: int | None = None, loss: float = 0.1,
                   delay: float = 0.002, regime: str = "cam_shake", seed: int = 0) -> dict:
    """Stream ``frames`` frames of ``regime`` in process, over TCP, over UDP and over UDP with ``loss`` (each
    way) and ``delay`` (+ up to the same again of jitter); one row each, plus ``fps_ratio`` to in-process."""
    from semcom.sources import open_source
    from semcom.threads import torch_threads

    probe = _sender(model, quality)
    size = (probe.link.height, probe.link.width) if model == "sphere64" else (probe.config.height,
                                                                               probe.config.width)
    clip = open_source(regime, height=size[0], width=size[1], frames=frames, seed=seed).frames
    rows: dict[str, dict] = {}
    with torch_threads(1):
        rows["in_process"] = asyncio.run(_in_process(probe, clip))
        rows["tcp"] = _over_socket(_sender(model, quality), clip, "tcp", None)
        rows["udp"] = _over_socket(_sender(model, quality), clip, "udp", None)
        rows["udp_loss"] = _over_socket(_sender(model, quality), clip, "udp",
                                        {"loss": loss, "delay": delay, "jitter": delay, "seed": seed})
    base = rows["in_process"]["fps"]
    for row in rows.values():
        row["fps_ratio"] = row["fps"] / base
    return {"model": model, "frames": frames, "regime": regime, "loss": loss, "delay_s": delay, "rows": rows}


def format_live_bench(result: dict):
    """A rich table of :func:`run_live_bench`'s rows."""
    from rich.table import Table

    table = Table(title=f"live link, {result['model']}, {result['frames']} frames of {result['regime']} "
                        f"(udp_loss: {result['loss']:.0%} loss each way)", title_justify="left")
    cols = ("fps", "fps_ratio", "latency_ms", "bits_per_frame_wire", "feedback_bits_per_frame", "retransmissions")
    table.add_column("path")
    for c in cols:
        table.add_column(c, justify="right")
    for name, row in result["rows"].items():
        table.add_row(name, *(f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c))
                              for c in cols))
    return table
