"""Hostile peers against a live server on loopback: garbage, truncated and replayed packets, floods and
half-open connections, while an honest sender streams. The server must not crash, must not stall the honest
session, and must keep its state bounded; every exchange here is bounded in count and time."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import numpy as np
import pytest

from semcom.config import LinkConfig, ProtectionConfig
from semcom.live.client import SendConfig, send_frames
from semcom.live.framing import HEADER, MAGIC, VERSION, Kind, Sealer
from semcom.live.local import LocalServer
from semcom.live.schemes import FRAME_NUMBER, SphereSender
from semcom.live.server import MAX_INFLIGHT, ServeConfig, hello_payload
from semcom.sources import open_source

FLOOD = 3000        # datagrams per UDP flood
DEADLINE = 30.0     # seconds the honest sender may take, flood included


@pytest.fixture(scope="module")
def model():
    from semcom.models import load_autoencoder

    return load_autoencoder()


@pytest.fixture(scope="module")
def frames():
    return open_source("cam_shake", frames=16).frames


def sender(model) -> SphereSender:
    hp = model.hparams
    return SphereSender(model, LinkConfig(d=hp["d"], height=hp["height"], width=hp["width"]), ProtectionConfig())


class Honest(threading.Thread):
    """An honest sender on its own thread; ``result`` once done (or ``error``)."""

    def __init__(self, port: int, transport: str, s: SphereSender, frames):
        super().__init__(daemon=True)
        self.args, self.result, self.error = (port, transport, s, frames), None, None

    def run(self) -> None:
        port, transport, s, frames = self.args
        cfg = SendConfig(port=port, transport=transport, timeout=10, rto=0.05)
        try:
            self.result = asyncio.run(send_frames(cfg, s, frames, fps=40))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def hostile_datagrams(rng: np.random.Generator, live_session: int, header: bytes) -> list[bytes]:
    """Garbage, truncated, oversized-length, foreign-session, replayed and malformed-HELLO packets."""
    open_ = Sealer()
    valid = open_.seal(Kind.DATA, live_session, 1, FRAME_NUMBER.pack(0) + b"\0" * 20)
    out = []
    for i in range(FLOOD):
        kind = i % 8
        if kind == 0:
            out.append(rng.bytes(int(rng.integers(0, 1500))))
        elif kind == 1:
            out.append(valid[: int(rng.integers(0, len(valid)))])
        elif kind == 2:
            out.append(HEADER.pack(MAGIC, VERSION, Kind.DATA, 0, live_session, 2**32 - 1, 2**31) + b"x")
        elif kind == 3:
            out.append(open_.seal(Kind.DATA, int(rng.integers(0, 2**63)), 5, rng.bytes(30)))
        elif kind == 4:
            out.append(valid)                                           # a replay of an old sequence number
        elif kind == 5:
            out.append(open_.seal(Kind.HELLO, int(rng.integers(0, 2**63)), 1, rng.bytes(60)))
        elif kind == 6:
            bad = bytearray(header)
            bad[int(rng.integers(0, len(bad)))] ^= 0xFF
            hello = hello_payload(bytes(bad), {"time": time.time()})
            out.append(open_.seal(Kind.HELLO, int(rng.integers(0, 2**63)), 1, hello))
        else:
            out.append(open_.seal(Kind.WELCOME, live_session, 9, b"{}"))  # a reply kind sent as a request
    return out


def test_udp_fuzzing_and_floods_do_not_crash_stall_or_grow_the_server(tmp_path, model, frames):
    from PIL import Image

    s = sender(model)
    with LocalServer(ServeConfig(out=tmp_path, transport="udp", max_sessions=4)) as srv:
        honest = Honest(srv.port, "udp", s, frames)
        honest.start()
        while srv.call(lambda: len(srv.server.table)) == 0 and honest.is_alive():
            time.sleep(0.01)
        live = next(iter(srv.call(lambda: list(srv.server.table.sessions))))
        packets = hostile_datagrams(np.random.default_rng(0), live, s.header(0))
        t0 = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i, p in enumerate(packets):
                sock.sendto(p, ("127.0.0.1", srv.port))
                if i % 50 == 49:
                    time.sleep(0.002)          # a flood the server reads, not one the kernel drops
        honest.join(DEADLINE)
        assert not honest.is_alive() and honest.error is None, honest.error
        assert time.monotonic() - t0 < DEADLINE
        stats = srv.call(lambda: dict(srv.server.stats))
        bounds = srv.call(lambda: (len(srv.server.table), srv.server._inflight, len(srv.server._tasks)))
    assert stats["packets"] > FLOOD // 2 and stats["rejected"] > FLOOD // 8 and stats["replays"] > 0
    assert stats["sessions_opened"] == 1 and stats["internal_errors"] == 0   # no malformed HELLO opened one
    assert bounds[0] <= 4 and bounds[1] <= MAX_INFLIGHT and bounds[2] <= MAX_INFLIGHT + 2
    result = honest.result
    on_server = json.loads((tmp_path / result.summary["session"] / "session.json").read_text())
    assert on_server["packets"] == len(frames) and on_server["frames"] == len(frames)   # nothing hostile decoded
    pngs = sorted((tmp_path / result.summary["session"]).glob("frame_*.png"))
    assert len(pngs) == len(frames)
    assert all((sh.frame == Image.open(p)).all() for sh, p in zip(result.shown, pngs, strict=True))


def test_hello_floods_fill_the_table_to_its_limit_only(tmp_path, model):
    """Valid HELLOs from many forged session ids: at most max_sessions open; the rest are refused in one line."""
    header = sender(model).header(0)
    with LocalServer(ServeConfig(out=tmp_path, transport="udp", max_sessions=3)) as srv:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            replies = []
            for sid in range(1, 11):
                hello = hello_payload(header, {"time": time.time()})
                sock.sendto(Sealer().seal(Kind.HELLO, sid, 1, hello), ("127.0.0.1", srv.port))
                replies.append(Sealer().open(sock.recvfrom(4096)[0]))
        assert srv.call(lambda: len(srv.server.table)) == 3
    assert [r.kind for r in replies].count(Kind.WELCOME) == 3
    assert all(b"full" in r.payload for r in replies if r.kind is Kind.ERROR)


def test_malformed_hello_json_is_a_one_line_refusal(tmp_path, model):
    header = sender(model).header(0)
    bodies = [b"[" * 4000, b'{"protection": "x", "time": 1e300}', b'{"protection": {"cue_bits": 1e9}, "time": 0}',
              b"\xff\xfe", b'{"resume": true, "t": [], "digest": {}}']
    with LocalServer(ServeConfig(out=tmp_path, transport="udp")) as srv:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for i, body in enumerate(bodies):
                payload = hello_payload(header, {})[: 2 + len(header)] + body
                sock.sendto(Sealer().seal(Kind.HELLO, 100 + i, 1, payload), ("127.0.0.1", srv.port))
                reply = Sealer().open(sock.recvfrom(4096)[0])
                assert reply.kind is Kind.ERROR and b"\n" not in reply.payload
        stats = srv.call(lambda: dict(srv.server.stats))
    assert stats["internal_errors"] == 0 and stats["sessions_opened"] == 0


def test_oversized_codec_session_is_refused_before_allocating(tmp_path):
    from semcom.models.weights import fingerprint
    from semcom.models.zoo import load_model
    from semcom.schemes.codec_link import CodecHeader, CodecLinkConfig

    header = CodecHeader(CodecLinkConfig(height=4096, width=4096, m_max=4096), 1,
                         fingerprint(load_model("hyperprior"))).to_bytes()
    with LocalServer(ServeConfig(out=tmp_path, transport="udp")) as srv:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            hello = hello_payload(header, {"time": time.time()})
            sock.sendto(Sealer().seal(Kind.HELLO, 77, 1, hello), ("127.0.0.1", srv.port))
            reply = Sealer().open(sock.recvfrom(4096)[0])
    assert reply.kind is Kind.ERROR and b"at most" in reply.payload


def test_tcp_garbage_oversize_and_half_open_connections(tmp_path, model, frames):
    """Garbage and oversized headers close their connection at once; half-open ones close after the idle
    timeout; connections past the limit are refused; the honest TCP sender is not stalled."""
    cfg = ServeConfig(out=tmp_path, idle_timeout=0.5, max_sessions=2, max_connections=6, max_packet_bytes=4096)
    with LocalServer(cfg) as srv:
        honest = Honest(srv.port, "tcp", sender(model), frames)
        honest.start()
        while srv.call(lambda: len(srv.server.table)) == 0 and honest.is_alive():
            time.sleep(0.01)                                       # its connection holds one of the 6 places
        addr = ("127.0.0.1", srv.port)
        conns = [socket.create_connection(addr, timeout=5) for _ in range(8)]   # 2 past the limit (with the honest)
        try:
            conns[0].sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(64))                 # garbage
            conns[1].sendall(HEADER.pack(MAGIC, VERSION, Kind.DATA, 0, 1, 1, 10**6))  # over --max-packet-bytes
            conns[2].sendall(HEADER.pack(MAGIC, VERSION, Kind.DATA, 0, 1, 1, 100)[:7])  # truncated, then silence
            conns[3].sendall(HEADER.pack(MAGIC, VERSION, Kind.DATA, 0, 1, 1, 100) + b"x")  # body never finished
            for c in conns:   # each recv would time out (5 s) on a connection left open
                assert c.recv(16) == b""                                           # every one is closed
        finally:
            for c in conns:
                c.close()
        honest.join(DEADLINE)
        assert not honest.is_alive() and honest.error is None, honest.error
        time.sleep(0.1)
        stats = srv.call(lambda: dict(srv.server.stats))
        assert srv.call(lambda: srv.server._open_connections) == 0
    assert stats["connections_refused"] >= 1 and stats["rejected"] >= 2
    assert honest.result.summary["frames"] == len(frames)
