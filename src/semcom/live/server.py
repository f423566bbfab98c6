"""``semcom serve``: the receiving end of the live link, on asyncio, over TCP or UDP.

Every packet goes through :meth:`LiveServer.handle`, whatever the transport: its header and seal are checked
first (a packet that fails is dropped and counted and never reaches a session: an open ``ERROR`` answers only a
``HELLO`` that fails, so that a sender with the wrong key learns why), then its session and sequence number
(a repeat of the last request gets the same answer again, anything older is a replay and is dropped), and only
then does the session's receiver see it, on a worker thread so that one session's decoding does not stall the
others. A session handles one request at a time; what arrives for it meanwhile waits its turn (up to
:data:`BUSY_WAIT` seconds, then it is dropped and the sender retransmits).

Bounds: ``max_sessions`` sessions, ``max_packet_bytes`` per packet (a TCP reader refuses a larger one from its
header), ``max_memory`` bytes of memory per session, ``idle_timeout`` seconds of silence before a session or a
TCP connection is closed, ``max_connections`` TCP connections and :data:`MAX_INFLIGHT` datagrams in
processing at once.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from semcom.errors import SemcomError

from .aio import within
from .framing import DEFAULT_MAX_PACKET, HEADER_SIZE, REQUESTS, AuthError, Kind, Packet, PacketError, Sealer
from .framing import peek_header as _peek
from .schemes import FRAME_NUMBER
from .sessions import Session, SessionTable

#: Datagrams being processed at once on UDP; more are dropped (a flood cannot queue work without bound).
MAX_INFLIGHT = 64
#: Sessions ended by their sender whose last reply (the DONE) is kept, for a sender that did not get it.
MAX_FINISHED = 256
#: Seconds a new session's HELLO stays fresh (its ``time`` against the server's clock, either way); within
#: that window the server remembers every session id it opened, so a captured HELLO cannot open it again.
HELLO_WINDOW = 300.0
#: Session ids remembered within the window (the oldest are forgotten first).
MAX_SEEN = 1 << 16
#: Seconds a request waits for the one before it in its session; then it is dropped (a sender retransmits).
BUSY_WAIT = 2.0
#: Largest JSON part of a HELLO.
MAX_HELLO_JSON = 4096
_HEADER_LEN = struct.Struct(">H")


@dataclass
class ServeConfig:
    """What ``semcom serve`` is told: where to listen and write, the key, and the limits."""

    host: str = "127.0.0.1"
    port: int = 0
    out: Path = Path("live-out")
    transport: str = "tcp"
    key: bytes | None = None
    encrypt: bool = False
    max_sessions: int = 16
    max_packet_bytes: int = DEFAULT_MAX_PACKET
    max_memory: int = 64 << 20
    idle_timeout: float = 60.0
    max_connections: int | None = None


def parse_hello(payload: bytes) -> tuple[bytes, dict]:
    """A ``HELLO`` payload: ``header length (2) | the scheme's stream header | JSON``."""
    if len(payload) < _HEADER_LEN.size:
        raise PacketError("truncated HELLO")
    (n,) = _HEADER_LEN.unpack_from(payload)
    header, text = payload[2 : 2 + n], payload[2 + n :]
    if len(header) != n or len(text) > MAX_HELLO_JSON:
        raise PacketError("malformed HELLO")
    try:
        hello = json.loads(text.decode()) if text else {}
    except (ValueError, RecursionError):
        raise PacketError("HELLO carries no valid JSON") from None
    if not isinstance(hello, dict):
        raise PacketError("HELLO's JSON is not an object")
    return header, hello


def hello_payload(header: bytes, hello: dict) -> bytes:
    return _HEADER_LEN.pack(len(header)) + header + json.dumps(hello).encode()


class LiveServer:
    """The sessions behind one socket; :meth:`start` binds it (port 0: an ephemeral one, see :attr:`port`)."""

    def __init__(self, config: ServeConfig, log: Callable[[dict], None] | None = None):
        self.config = config
        self.sealer = Sealer(config.key, config.encrypt)
        self.table = SessionTable(Path(config.out), config.max_sessions, config.max_memory, config.idle_timeout)
        self.log = log or (lambda event: None)
        self.stats = {"packets": 0, "rejected": 0, "auth_failures": 0, "replays": 0, "busy_drops": 0,
                      "flood_drops": 0, "errors_sent": 0, "connections": 0, "connections_refused": 0,
                      "sessions_opened": 0, "sessions_closed": 0, "internal_errors": 0}
        self.port: int | None = None
        self._servers: list = []
        self._tasks: set[asyncio.Task] = set()
        self._inflight = 0
        self._open_connections = 0
        self._written: dict[int, int] = {}
        self._opening: set[int] = set()
        self._seen: OrderedDict[int, float] = OrderedDict()
        self._finished: OrderedDict[int, tuple[int, bytes]] = OrderedDict()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        c = self.config
        Path(c.out).mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        if c.transport == "udp":
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(c.host, c.port))
            self._servers.append(transport)
            self.port = transport.get_extra_info("sockname")[1]
        else:
            server = await asyncio.start_server(self._tcp_connection, c.host, c.port)
            self._servers.append(server)
            self.port = server.sockets[0].getsockname()[1]
        self._spawn(self._ticker())

    async def close(self) -> None:
        """Stop listening; write every session's ``session.json``."""
        for s in self._servers:
            s.close()
        for task in list(self._tasks):
            task.cancel()
        for sid in list(self.table.sessions):
            self._closed(self.table.close(sid), "shutdown")

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ticker(self) -> None:
        """Once a second (or faster with a short timeout): close idle sessions, refresh ``session.json``."""
        period = max(0.05, min(1.0, self.config.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            while self._seen and time.time() - next(iter(self._seen.values())) > HELLO_WINDOW:
                self._seen.popitem(last=False)
            for summary in self.table.expire():
                self._closed(summary, "idle timeout")
            for sid, s in list(self.table.sessions.items()):
                if self._written.get(sid) != s.counters.packets and not s.busy:
                    s.write_json()
                    self._written[sid] = s.counters.packets

    def _closed(self, summary: dict | None, why: str) -> None:
        if summary is not None:
            self.stats["sessions_closed"] += 1
            self._written.pop(int(summary["session"], 16), None)
            self.log({"event": "session_closed", "reason": why, **summary})

    # -- packets -------------------------------------------------------------------------------------------------

    async def handle(self, data: bytes) -> bytes | None:
        """One packet in, the reply (None: dropped). Never raises for anything a peer sends."""
        self.stats["packets"] += 1
        try:
            return await self._handle(data)
        except Exception:  # noqa: BLE001 - a bug must cost one packet, never the server
            self.stats["internal_errors"] += 1
            return None

    async def _handle(self, data: bytes) -> bytes | None:
        try:
            pkt = self.sealer.open(data, self.config.max_packet_bytes)
        except AuthError as exc:
            self.stats["auth_failures"] += 1
            return self._auth_error(data, exc)
        except PacketError:
            self.stats["rejected"] += 1
            return None
        if pkt.kind not in REQUESTS:
            self.stats["rejected"] += 1
            return None
        s = self.table.get(pkt.session)
        if s is None and self._finished.get(pkt.session, (None,))[0] == pkt.seq:
            return self._finished[pkt.session][1]         # a repeated BYE of a session that ended
        if s is None:
            if pkt.kind is Kind.HELLO:
                return await self._hello(pkt, None, len(data))
            return self._error(pkt, f"no session {pkt.session:016x} on this server (it ended, timed out, or the "
                                    "server restarted)")
        if s.busy and pkt.seq <= s.last_seq:              # a replay, or a repeat of the request being served:
            self.stats["replays" if pkt.seq < s.last_seq else "busy_drops"] += 1   # only new requests wait
            return None
        try:                                              # the session's requests, one at a time
            if s.busy:
                await within(s.lock.acquire(), BUSY_WAIT)
            else:
                await s.lock.acquire()                    # free: taken at once, no other task runs meanwhile
        except asyncio.TimeoutError:
            self.stats["busy_drops"] += 1
            return None
        try:
            if self.table.get(pkt.session) is not s:      # closed while this one waited
                return None
            return await self._in_session(s, pkt, len(data))
        finally:
            s.lock.release()

    async def _in_session(self, s: Session, pkt: Packet, size: int) -> bytes | None:
        """A request of an open session (its lock held): the cached reply to a repeat, nothing to a replay,
        else the request served."""
        if s.cached is not None and pkt.seq == s.cached[0]:
            s.counters.duplicates += 1
            s.counters.forward_bytes += size
            s.counters.feedback_bytes += len(s.cached[1])
            return s.cached[1]
        if pkt.seq <= s.last_seq:
            self.stats["replays"] += 1
            if pkt.kind is Kind.HELLO:                    # a stale state file (or a replay: it changes nothing)
                return self._error(pkt, f"cannot resume session {s.name}: the sender's state is older than the "
                                        f"session's (request {pkt.seq}, the server is at {s.last_seq}); nothing "
                                        "was decoded")
            return None
        if pkt.kind is Kind.HELLO:
            return await self._hello(pkt, s, size)
        return await self._request(s, pkt, size)

    def _auth_error(self, data: bytes, exc: AuthError) -> bytes | None:
        """An open ERROR for a ``HELLO`` that fails authentication (no answer to anything else)."""
        try:
            kind, _, sid, seq, _ = _peek(data)
        except PacketError:
            return None
        if kind is not Kind.HELLO:
            return None
        self.stats["errors_sent"] += 1
        why = "the server has no key" if self.sealer.mode == "open" else "wrong key, or none"
        return self.sealer.seal(Kind.ERROR, sid, seq, f"authentication failed ({why}): {exc}".encode(), open_=True)

    def _error(self, pkt: Packet, message: str) -> bytes:
        self.stats["errors_sent"] += 1
        return self.sealer.seal(Kind.ERROR, pkt.session, pkt.seq, message.encode()[:400])

    async def _hello(self, pkt: Packet, s: Session | None, size: int) -> bytes | None:
        try:
            header, hello = parse_hello(pkt.payload)
        except PacketError as exc:
            self.stats["rejected"] += 1
            return self._error(pkt, str(exc))
        name = f"{pkt.session:016x}"
        if hello.get("resume"):
            if s is None:
                return self._error(pkt, f"cannot resume session {name}: this server holds no such session (it "
                                        "ended, timed out, or the server restarted)")
            return self._resume(s, pkt, header, hello, size)
        if s is not None:
            return self._error(pkt, f"session id {name} is already in use")
        sent = hello.get("time")
        if not isinstance(sent, (int, float)) or not abs(time.time() - sent) <= HELLO_WINDOW:
            return self._error(pkt, f"cannot open session {name}: its HELLO is not fresh (a replay, or clocks more "
                                    f"than {HELLO_WINDOW:g} s apart)")
        if pkt.session in self._seen:
            return self._error(pkt, f"cannot open session {name}: that id was used already (a replayed HELLO?)")
        if pkt.session in self._opening:
            self.stats["busy_drops"] += 1                 # a repeat of a HELLO still being served
            return None
        try:
            self.table.reserve()
        except SemcomError as exc:
            return self._error(pkt, str(exc))
        self._opening.add(pkt.session)
        try:
            s = await asyncio.to_thread(self.table.create, pkt.session, header, hello, self.config.transport,
                                        pkt.seq)
        except SemcomError as exc:
            return self._error(pkt, f"cannot open a session: {exc}")
        except Exception as exc:  # noqa: BLE001 - a peer's header must never take the server down
            return self._error(pkt, f"cannot open a session: {type(exc).__name__}: {exc}")
        finally:
            self.table.opening -= 1
            self._opening.discard(pkt.session)
        self.table.add(s)
        self._seen[pkt.session] = time.time()
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        self.stats["sessions_opened"] += 1
        self.log({"event": "session_opened", "session": name, "scheme": s.endpoint.scheme})
        return self._answer(s, pkt, Kind.WELCOME, json.dumps({"session": name, "t": 0}).encode(), size)

    def _resume(self, s: Session, pkt: Packet, header: bytes, hello: dict, size: int) -> bytes:
        """Resume ``s`` only if the sender's link and memory are the server's (nothing decoded otherwise)."""
        name = s.name
        if header != s.header:
            return self._error(pkt, f"cannot resume session {name}: it was opened with another link configuration")
        ep = s.endpoint
        candidates = hello.get("candidates")
        if not isinstance(candidates, list) or not 1 <= len(candidates) <= 4 or \
                not all(isinstance(c, dict) for c in candidates):
            return self._error(pkt, f"cannot resume session {name}: the HELLO lists no memory to compare")
        ours = (ep.t, ep.digest())
        match = next((i for i, c in enumerate(candidates) if (c.get("t"), c.get("digest")) == ours), None)
        if match is None:
            frames = " or ".join(str(c.get("t")) for c in candidates)
            return self._error(pkt, f"cannot resume session {name}: the memories differ (sender at frame {frames}, "
                                    f"server at frame {ep.t}); nothing was decoded")
        ep.resumed()
        s.last_seq = pkt.seq
        self.log({"event": "session_resumed", "session": name, "t": ep.t})
        reply = {"session": name, "t": ep.t, "candidate": match}
        return self._answer(s, pkt, Kind.WELCOME, json.dumps(reply).encode(), size)

    def _answer(self, s: Session, pkt: Packet, kind: Kind, payload: bytes, size: int) -> bytes:
        """Seal a reply, remember it for a duplicate of its request, and count both."""
        reply = self.sealer.seal(kind, pkt.session, pkt.seq, payload)
        s.cached, s.last_active = (pkt.seq, reply), time.monotonic()
        s.counters.forward_bytes += size
        s.counters.feedback_bytes += len(reply)
        return reply

    async def _request(self, s: Session, pkt: Packet, size: int) -> bytes:
        """A ``DATA`` or a ``BYE`` of session ``s`` (its lock held); an error is remembered like any reply, so a
        repeat of the request gets it again."""
        s.last_seq = pkt.seq
        if pkt.kind is Kind.BYE:
            return self._bye(s, pkt, size)
        why = "DATA without its frame number"
        if len(pkt.payload) >= FRAME_NUMBER.size:
            (t,) = FRAME_NUMBER.unpack_from(pkt.payload)
            packet = pkt.payload[FRAME_NUMBER.size :]
            try:
                reply = await asyncio.to_thread(self._decode, s, t, packet)
                s.counters.payload_bytes += len(packet)
                return self._answer(s, pkt, Kind.FEEDBACK, reply, size)
            except SemcomError as exc:
                why = f"session {s.name}: {exc}"
            except Exception as exc:  # noqa: BLE001 - a peer's packet must never take the server down
                why = f"session {s.name}: {type(exc).__name__}: {exc}"
        reply = self._error(pkt, why)
        s.cached = (pkt.seq, reply)
        return reply

    @staticmethod
    def _decode(s: Session, t: int, packet: bytes) -> bytes:
        reply, decoded = s.endpoint.on_data(t, packet)
        s.counters.packets += 1
        s.record(decoded)
        return reply

    def _bye(self, s: Session, pkt: Packet, size: int) -> bytes:
        try:
            keep = bool(json.loads(pkt.payload.decode() or "{}").get("keep"))
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            keep = False
        s.counters.forward_bytes += size
        summary = s.write_json()
        reply = self._answer(s, pkt, Kind.DONE, json.dumps(summary).encode(), 0)
        if not keep:
            self._closed(self.table.close(s.id), "sender done")
            self._finished[s.id] = (pkt.seq, reply)
            while len(self._finished) > MAX_FINISHED:
                self._finished.popitem(last=False)
        return reply

    # -- TCP -----------------------------------------------------------------------------------------------------

    async def _tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One TCP peer: length-prefixed packets in order, each answered on the same connection."""
        limit = self.config.max_connections or 4 * self.config.max_sessions + 16
        if self._open_connections >= limit:
            self.stats["connections_refused"] += 1
            writer.close()
            return
        self._open_connections += 1
        self.stats["connections"] += 1
        timeout = self.config.idle_timeout
        try:
            while True:
                head = await within(reader.readexactly(HEADER_SIZE), timeout)
                try:
                    _, _, _, _, length = _peek(head)
                except PacketError:
                    self.stats["rejected"] += 1
                    break                                     # the stream is lost: nothing after it can be framed
                if HEADER_SIZE + length > self.config.max_packet_bytes:
                    self.stats["rejected"] += 1
                    break
                body = await within(reader.readexactly(length), timeout)
                reply = await self.handle(head + body)
                if reply is not None:
                    writer.write(reply)
                    await within(writer.drain(), timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self._open_connections -= 1
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    """Datagrams to :meth:`LiveServer.handle`, at most :data:`MAX_INFLIGHT` at once; replies to the sender."""

    def __init__(self, server: LiveServer):
        self.server = server
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        srv = self.server
        if srv._inflight >= MAX_INFLIGHT:
            srv.stats["flood_drops"] += 1
            return
        srv._inflight += 1
        srv._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr) -> None:
        try:
            reply = await self.server.handle(data)
            if reply is not None and self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(reply, addr)
        finally:
            self.server._inflight -= 1

    def error_received(self, exc: Exception) -> None:  # ICMP errors of earlier replies: nothing to do
        pass


async def serve_forever(server: LiveServer, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM); then close, writing every ``session.json``."""
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await server.close()

