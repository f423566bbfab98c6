"""The server's sessions: one receiver, memory and output folder each, with limits and an idle timeout.

A session opens with a ``HELLO`` that carries the scheme's stream header (and, for sphere64, the protection
config); the server builds the matching receiver (:mod:`semcom.live.schemes`) with its own copy of the model
weights' fingerprint check, refuses it when the table is full (``max_sessions``) or when its memory at
``m_max`` would exceed ``max_memory`` bytes, and writes ``OUT/<session>/`` as frames are decoded. A session
idle for ``idle_timeout`` seconds is closed; a sender may resume a session still held, after the two memory
digests agree (:func:`semcom.live.schemes.state_digest`).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from semcom.errors import SemcomError

from .schemes import (
    Decoded,
    RangeCodedSession,
    SphereSession,
    codec_session,
    label_session,
    memory_bytes,
    token_session,
)

#: Ended sessions the server still shows on its page.
MAX_ENDED = 16
#: Keys of ``session.json`` and of ``semcom send --json`` (which adds ``psnr_db``).
SUMMARY_KEYS = ("frames", "bytes", "bits_per_frame_wire", "feedback_bits_per_frame", "hit_rate", "lost_frames",
                "refreshes")


def summary(frames: int, forward_bytes: int, feedback_bytes: int, hits: int, lost: int, refreshes: int,
            payload_bytes: int = 0, protocol_feedback_bits: int = 0) -> dict:
    """The totals both ends report. ``frames``: frames decoded; the rates are per frame carried (decoded or
    lost); ``bytes``: every forward byte on the socket (headers, seals and retransmissions included),
    ``payload_bits_per_frame``: the schemes' packets alone; ``feedback_bits_per_frame``: every byte back."""
    carried = frames + lost
    per = (lambda v: 8 * v / carried) if carried else (lambda v: None)
    return {"frames": frames, "bytes": forward_bytes, "bits_per_frame_wire": per(forward_bytes),
            "feedback_bits_per_frame": per(feedback_bytes), "hit_rate": hits / frames if frames else None,
            "lost_frames": lost, "refreshes": refreshes, "payload_bits_per_frame": per(payload_bytes),
            "protocol_feedback_bits_per_frame": protocol_feedback_bits / carried if carried else None}


@dataclass
class Counters:
    """A session's tallies on the server."""

    frames: int = 0
    hits: int = 0
    lost: int = 0
    refreshes: int = 0
    forward_bytes: int = 0
    feedback_bytes: int = 0
    payload_bytes: int = 0
    protocol_feedback_bits: int = 0
    packets: int = 0
    duplicates: int = 0
    repairs: dict = field(default_factory=lambda: dict.fromkeys(("cue_failures", "lookups", "resyncs",
                                                                 "repaired_slots"), 0))


class ModelCache:
    """The zoo's models by name (``codebook:<variant>`` for the codebook paper's VQ-VAEs), loaded once (shipped
    weights) and shared read-only by all sessions."""

    def __init__(self) -> None:
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        with self._lock:
            if name not in self._models:
                if name == "sphere64":
                    from semcom.models import load_autoencoder

                    self._models[name] = load_autoencoder()
                elif name.startswith("codebook:"):
                    from semcom.schemes.codebook import load_variant

                    self._models[name] = load_variant(name.removeprefix("codebook:"))
                else:
                    from semcom.models.zoo import load_model

                    self._models[name] = load_model(name)
            return self._models[name]


#: Largest frame (pixels) a live session may declare: decoding one costs the synthesis transform's activations.
MAX_FRAME_PIXELS = 512 * 512


def open_endpoint(header: bytes, hello: dict, models: ModelCache, max_memory: int):
    """The receiver a ``HELLO`` asks for, from its stream header (version 1: sphere64, 2: the codec link, 3: the
    codebook alone, index labels acknowledged; 4: the memory link over the codebook's token grid).

    The frame size and the memory the header declares are checked against :data:`MAX_FRAME_PIXELS` and
    ``max_memory`` before anything of that size is allocated."""
    from semcom.link.wire import StreamHeader
    from semcom.schemes import stream_version
    from semcom.schemes.codec_link import CodecHeader

    version = stream_version(header)
    if version == 1:
        cfg = StreamHeader.from_bytes(header).config
        d, make = cfg.d, lambda: SphereSession(header, hello, models.get("sphere64"))
    elif version == 2:
        cfg = CodecHeader.from_bytes(header).config
        model = models.get(cfg.model)
        d, make = model.hparams["c"] * (cfg.height // 8) * (cfg.width // 8), lambda: codec_session(header, hello, model)
    elif version == 3:
        from types import SimpleNamespace

        from semcom.schemes.codebook import parse_header

        h = parse_header(header)
        cfg = SimpleNamespace(height=h.height, width=h.width, m_max=1)
        model = models.get(f"codebook:{h.variant}")
        d, make = 1, lambda: label_session(header, hello, model)
    elif version == 4:
        from semcom.schemes.token_link import TokenHeader

        cfg = TokenHeader.from_bytes(header).config
        model = models.get(f"codebook:{cfg.variant}")
        d, make = (cfg.height // 8) * (cfg.width // 8), lambda: token_session(header, hello, model)
    else:
        raise SemcomError(f"unknown stream version {version}")
    if cfg.height * cfg.width > MAX_FRAME_PIXELS:
        raise SemcomError(f"frames of {cfg.height}x{cfg.width}, a live session takes at most {MAX_FRAME_PIXELS} pixels")
    need = memory_bytes(cfg.m_max, d)
    if need > max_memory:
        raise SemcomError(f"a session with this memory (m_max={cfg.m_max}) needs {need} bytes, the server allows "
                          f"{max_memory} per session")
    return make()


@dataclass
class Session:
    """One sender's session on the server."""

    id: int
    endpoint: SphereSession | RangeCodedSession
    header: bytes
    out: Path
    transport: str
    last_seq: int
    counters: Counters = field(default_factory=Counters)
    last_active: float = field(default_factory=time.monotonic)
    cached: tuple[int, bytes] | None = None    # (seq, reply) of the last request answered: sent again on a duplicate
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)   # one request of the session at a time
    latest_png: bytes | None = None
    latest_t: int | None = None
    closed: bool = False

    @property
    def name(self) -> str:
        return f"{self.id:016x}"

    @property
    def busy(self) -> bool:
        """A request of the session is being served."""
        return self.lock.locked()

    def record(self, decoded: Decoded) -> None:
        """Count a packet's outcome; write a decoded frame as ``frame_<t>.png``."""
        c = self.counters
        c.lost += decoded.lost
        c.protocol_feedback_bits += decoded.protocol_feedback_bits
        for k, v in (decoded.repairs or {}).items():
            c.repairs[k] += v
        if decoded.frame is None:
            return
        from PIL import Image

        c.frames += 1
        c.hits += decoded.kind in ("hit", "refined")
        c.refreshes += decoded.refreshes
        buf = io.BytesIO()
        Image.fromarray(decoded.frame).save(buf, format="PNG")
        self.latest_png, self.latest_t = buf.getvalue(), decoded.t
        (self.out / f"frame_{decoded.t:06d}.png").write_bytes(self.latest_png)

    def summary(self) -> dict:
        c, ep = self.counters, self.endpoint
        return summary(c.frames, c.forward_bytes, c.feedback_bytes, c.hits, c.lost, c.refreshes, c.payload_bytes,
                       c.protocol_feedback_bits) | {
            "session": self.name, "scheme": ep.scheme, "transport": self.transport, "t": ep.t,
            "memory_size": ep.memory.size, "packets": c.packets, "duplicates": c.duplicates, **c.repairs}

    def write_json(self) -> dict:
        s = self.summary()
        tmp = self.out / "session.json.tmp"
        tmp.write_text(json.dumps(s, indent=2) + "\n")
        tmp.replace(self.out / "session.json")
        return s


class SessionTable:
    """Every session of a server, within its limits."""

    def __init__(self, out: Path, max_sessions: int, max_memory: int, idle_timeout: float):
        self.out, self.max_sessions, self.max_memory, self.idle_timeout = out, max_sessions, max_memory, idle_timeout
        self.sessions: dict[int, Session] = {}
        self.models = ModelCache()
        self.opening = 0   # HELLOs being turned into sessions (they count against max_sessions)
        #: The last :data:`MAX_ENDED` sessions closed: (summary, latest PNG, its frame number), for the page.
        self.ended: OrderedDict[int, tuple[dict, bytes | None, int | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, sid: int) -> Session | None:
        return self.sessions.get(sid)

    def reserve(self) -> None:
        """Hold a place for a session about to open; a full table is a one-line refusal."""
        if len(self.sessions) + self.opening >= self.max_sessions:
            raise SemcomError(f"the server is full ({self.max_sessions} sessions); try again later")
        self.opening += 1

    def create(self, sid: int, header: bytes, hello: dict, transport: str, seq: int) -> Session:
        """Build a new session's receiver (slow: may load a model; call it off the event loop, after
        :meth:`reserve`), within the memory limit."""
        endpoint = open_endpoint(header, hello, self.models, self.max_memory)
        out = self.out / f"{sid:016x}"
        out.mkdir(parents=True, exist_ok=True)
        return Session(sid, endpoint, header, out, transport, seq)

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session

    def close(self, sid: int) -> dict | None:
        """Write a session's ``session.json`` and forget it."""
        s = self.sessions.pop(sid, None)
        if s is None:
            return None
        s.closed = True
        summary = s.write_json()
        self.ended[sid] = (summary, s.latest_png, s.latest_t)
        while len(self.ended) > MAX_ENDED:
            self.ended.popitem(last=False)
        return summary

    def expire(self, now: float | None = None) -> list[dict]:
        """Close every session idle longer than ``idle_timeout``; their summaries."""
        now = time.monotonic() if now is None else now
        idle = [sid for sid, s in self.sessions.items() if not s.busy and now - s.last_active > self.idle_timeout]
        return [self.close(sid) for sid in idle]
