"""``semcom send``: the transmitting end of the live link (asyncio), over TCP or UDP.

A sender talks in requests, each answered by exactly one reply with the same sequence number (stop and wait):
``HELLO`` (open or resume the session), one ``DATA`` per packet of a frame (answered with the receiver's
feedback), ``BYE``. On UDP a request unanswered after a retransmission timeout (``rto``, doubling up to 1 s) is
sent again with the same sequence number, and the server answers a repeat with the reply it already sent, so
losses, duplicates and reordering of either direction are absorbed without the receiver decoding anything
twice; stale or duplicate replies are dropped by sequence number. After ``timeout`` seconds without an
answer the peer is unreachable: a one-line :class:`PeerError`, as for a refused connection, a wrong key, or
a session the server cannot resume.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semcom.errors import SemcomError

from .aio import within
from .framing import DEFAULT_MAX_PACKET, HEADER_SIZE, AuthError, Kind, Packet, PacketError, Sealer, peek_header
from .schemes import FRAME_NUMBER, Shown
from .server import hello_payload
from .sessions import summary
from .state import SenderState, save_state

REPLIES = frozenset({Kind.WELCOME, Kind.FEEDBACK, Kind.DONE, Kind.ERROR})
#: The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507
#: Replies a UDP sender queues before reading them (more are dropped: a flood of stray datagrams stays bounded).
MAX_QUEUED = 64


class PeerError(SemcomError):
    """The server is unreachable, refuses the key, or refuses the request (its one-line reason)."""


@dataclass
class SendConfig:
    host: str = "127.0.0.1"
    port: int = 0
    transport: str = "tcp"
    key: bytes | None = None
    encrypt: bool = False
    timeout: float = 5.0       # seconds without an answer before the peer is unreachable
    rto: float = 0.1           # first UDP retransmission timeout
    max_packet_bytes: int = DEFAULT_MAX_PACKET


@dataclass
class Connection:
    """A sealed request/reply channel to the server; counts every byte each way."""

    config: SendConfig
    session: int
    seq: int = 1
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmissions: int = 0
    sealer: Sealer = field(init=False)

    def __post_init__(self) -> None:
        self.sealer = Sealer(self.config.key, self.config.encrypt)

    @property
    def peer(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    async def request(self, kind: Kind, payload: bytes) -> Packet:
        """Send one request, return its reply; an ``ERROR`` reply raises :class:`PeerError` with its reason."""
        seq, self.seq = self.seq, self.seq + 1
        reply = await self._roundtrip(self.sealer.seal(kind, self.session, seq, payload), seq)
        if reply.kind is Kind.ERROR:
            raise PeerError(f"{self.peer}: {reply.payload.decode(errors='replace')}")
        return reply

    def _accept(self, data: bytes, seq: int) -> Packet | None:
        """A reply to request ``seq``, or None for anything else (stale, duplicate, foreign)."""
        self.bytes_received += len(data)
        pkt = self.sealer.open(data, self.config.max_packet_bytes, allow_open_error=True)
        if pkt.kind in REPLIES and pkt.session == self.session and pkt.seq == seq:
            return pkt
        return None

    def _unreachable(self, auth_failed: bool) -> PeerError:
        if auth_failed:
            return PeerError(f"{self.peer}: the server's replies fail authentication (wrong key?)")
        return PeerError(f"no answer from {self.peer} over {self.config.transport} within {self.config.timeout:g} s")

    async def _roundtrip(self, packet: bytes, seq: int) -> Packet:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class TcpConnection(Connection):
    async def open(self) -> None:
        try:
            self.reader, self.writer = await within(
                asyncio.open_connection(self.config.host, self.config.port), self.config.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or "timed out"
            raise PeerError(f"cannot connect to {self.peer} over tcp: {why}") from None

    async def _roundtrip(self, packet: bytes, seq: int) -> Packet:
        deadline = time.monotonic() + self.config.timeout
        auth_failed = False
        try:
            self.writer.write(packet)
            self.bytes_sent += len(packet)
            await within(self.writer.drain(), self.config.timeout)
            while True:
                left = deadline - time.monotonic()
                head = await within(self.reader.readexactly(HEADER_SIZE), left)
                length = peek_header(head)[4]
                if HEADER_SIZE + length > self.config.max_packet_bytes:
                    raise PeerError(f"{self.peer}: reply of {HEADER_SIZE + length} bytes, over the limit")
                body = await within(self.reader.readexactly(length), max(0.0, deadline - time.monotonic()))
                try:
                    reply = self._accept(head + body, seq)
                except AuthError:
                    auth_failed = True
                    raise self._unreachable(True) from None
                if reply is not None:
                    return reply
        except asyncio.TimeoutError:
            raise self._unreachable(auth_failed) from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            raise PeerError(f"{self.peer} closed the connection") from None
        except PacketError as exc:
            raise PeerError(f"{self.peer} is not a semcom server, or not one of this version ({exc})") from None

    async def close(self) -> None:
        self.writer.close()
        try:
            await within(self.writer.wait_closed(), 1.0)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass


class _UdpQueue(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED)
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.error = exc
        if not self.queue.full():
            self.queue.put_nowait(None)


class UdpConnection(Connection):
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.transport, self.protocol = await loop.create_datagram_endpoint(
                _UdpQueue, remote_addr=(self.config.host, self.config.port))
        except OSError as exc:
            raise PeerError(f"cannot reach {self.peer} over udp: {exc.strerror or exc}") from None

    async def _roundtrip(self, packet: bytes, seq: int) -> Packet:
        if len(packet) > MAX_DATAGRAM:
            raise PeerError(f"a packet of {len(packet)} bytes does not fit in a UDP datagram ({MAX_DATAGRAM}); "
                            "use --transport tcp for frames this large")
        deadline = time.monotonic() + self.config.timeout
        rto, auth_failed, first = self.config.rto, False, True
        while True:
            if not first:
                self.retransmissions += 1
            first = False
            self.transport.sendto(packet)
            self.bytes_sent += len(packet)
            until = min(time.monotonic() + rto, deadline)
            while (left := until - time.monotonic()) > 0:
                try:
                    data = await within(self.protocol.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                if data is None:
                    if isinstance(self.protocol.error, ConnectionRefusedError):
                        raise PeerError(f"cannot reach {self.peer} over udp: connection refused") from None
                    continue
                try:
                    reply = self._accept(data, seq)
                except AuthError:
                    auth_failed = True
                    continue
                except PacketError:
                    continue
                if reply is not None:
                    return reply
            if time.monotonic() >= deadline:
                raise self._unreachable(auth_failed)
            rto = min(2 * rto, 1.0)

    async def close(self) -> None:
        self.transport.close()


async def connect(config: SendConfig, session: int, seq: int = 1) -> Connection:
    conn = (UdpConnection if config.transport == "udp" else TcpConnection)(config, session, seq)
    await conn.open()
    return conn


@dataclass
class SendResult:
    """A sender's run: its totals (the keys of ``session.json``), the server's, and what the receiver shows."""

    summary: dict
    server: dict
    shown: list[Shown]


def _candidates(sender, state: SenderState | None) -> list[dict]:
    """The frame counter and memory digest of each state a resumed session may be in (see :class:`SenderState`)."""
    out = []
    for arrays in state.candidates() if state is not None else []:
        sender.restore(arrays)
        out.append({"t": sender.t, "digest": sender.digest()})
    return out


async def _open_session(conn: Connection, sender, header: bytes, state: SenderState | None) -> None:
    """``HELLO`` -> ``WELCOME``; on a resume, restore the candidate state whose memory the server holds."""
    candidates = _candidates(sender, state)
    hello = {**sender.hello(), "resume": state is not None, "candidates": candidates, "time": time.time()}
    welcome = await conn.request(Kind.HELLO, hello_payload(header, hello))
    if welcome.kind is not Kind.WELCOME:
        raise PeerError(f"{conn.peer}: answered HELLO with {welcome.kind.name}")
    if state is not None:
        choice = json.loads(welcome.payload.decode()).get("candidate", 0)
        if not isinstance(choice, int) or not 0 <= choice < len(candidates):
            raise PeerError(f"{conn.peer}: resumed an unknown state")
        sender.restore(state.candidates()[choice])


def _totals(conn: Connection, sender, shown: list[Shown], payload_bytes: int, latencies: list[float],
            elapsed: float) -> dict:
    """The sender's totals: the keys of ``session.json`` and its own (retransmissions, fps, latency)."""
    decoded = [s for s in shown if s.frame is not None]
    totals = summary(len(decoded), conn.bytes_sent, conn.bytes_received, sum(s.hit for s in decoded),
                     sum(s.frame is None for s in shown), sum(s.refreshes for s in shown), payload_bytes,
                     sum(s.protocol_feedback_bits for s in shown))
    return totals | {"session": f"{conn.session:016x}", "transport": conn.config.transport, "t": sender.t,
                     "memory_size": sender.memory.size, "retransmissions": conn.retransmissions,
                     "fps": len(shown) / elapsed if elapsed > 0 else None,
                     "latency_ms": 1000 * float(np.mean(latencies)) if latencies else None}


async def send_frames(config: SendConfig, sender, frames, *, state: SenderState | None = None,
                      state_path: str | Path | None = None, fps: float | None = None,
                      on_frame=None) -> SendResult:
    """Open (or, with ``state``, resume) a session and send ``frames`` through ``sender`` (a
    :mod:`semcom.live.schemes` sender); write ``state_path`` at the end (even after an error, once the session
    was opened or resumed), from the last acknowledged frame. ``fps``: pace the frames like a camera;
    ``on_frame(shown)`` is called after each frame."""
    header = sender.header(0)
    sid, seq = (state.session, state.seq) if state is not None else (secrets.randbits(64), 1)
    conn = await connect(config, sid, seq)
    opened, good = False, None      # the state file is written only for a session the server holds
    shown: list[Shown] = []
    payload_bytes, latencies, start = 0, [], time.monotonic()

    async def exchange(t: int, packet: bytes) -> bytes:
        nonlocal payload_bytes
        payload_bytes += len(packet)
        reply = await conn.request(Kind.DATA, FRAME_NUMBER.pack(t) + packet)
        if reply.kind is not Kind.FEEDBACK:
            raise PeerError(f"{conn.peer}: answered a frame with {reply.kind.name}")
        return reply.payload

    try:
        await _open_session(conn, sender, header, state)
        opened, good = True, sender.state() if state_path is not None else None
        for i, frame in enumerate(frames):
            if fps:
                await asyncio.sleep(max(0.0, start + i / fps - time.monotonic()))
            t0 = time.monotonic()
            shown.append(await sender.send_frame(frame, exchange))
            latencies.append(time.monotonic() - t0)
            if state_path is not None:
                good = sender.state()
            if on_frame is not None:
                on_frame(shown[-1])
        done = await conn.request(Kind.BYE, json.dumps({"keep": state_path is not None}).encode())
        server = json.loads(done.payload.decode()) if done.kind is Kind.DONE else {}
    finally:
        if state_path is not None and opened:
            save_state(state_path, SenderState(sid, conn.seq, header, good, sender.pending_state()))
        await conn.close()
    return SendResult(_totals(conn, sender, shown, payload_bytes, latencies, time.monotonic() - start), server,
                      shown)
