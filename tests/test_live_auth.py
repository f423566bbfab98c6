"""Who may talk to a live server: HMAC-SHA256 or AEAD under a pre-shared key, sequence numbers against
replay; a packet that fails is dropped and counted and never touches a session."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket

import pytest

from semcom.cli import main as cli_main
from semcom.config import LinkConfig, ProtectionConfig
from semcom.live.client import PeerError, SendConfig, send_frames
from semcom.live.framing import Kind, Sealer
from semcom.live.local import LocalServer
from semcom.live.schemes import FRAME_NUMBER, SphereSender
from semcom.live.server import ServeConfig
from semcom.sources import open_source

KEY = b"correct horse battery staple 0123"
needs_aead = pytest.mark.skipif(importlib.util.find_spec("cryptography") is None,
                                reason="--encrypt needs the cryptography package, not installed here")
OTHER = b"another key, of the same length!!"


@pytest.fixture(scope="module")
def model():
    from semcom.models import load_autoencoder

    return load_autoencoder()


@pytest.fixture(scope="module")
def frames():
    return open_source("cam_shake", frames=6).frames


def sender(model) -> SphereSender:
    hp = model.hparams
    return SphereSender(model, LinkConfig(d=hp["d"], height=hp["height"], width=hp["width"]), ProtectionConfig())


def send(port, s, frames, transport="tcp", key=None, encrypt=False, **kw):
    cfg = SendConfig(port=port, transport=transport, key=key, encrypt=encrypt, timeout=1.5, rto=0.02)
    return asyncio.run(send_frames(cfg, s, frames, **kw))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("encrypt", [False, pytest.param(True, marks=needs_aead)], ids=["hmac", "aead"])
def test_keyed_link_works_and_is_bit_exact(tmp_path, model, frames, transport, encrypt):
    from PIL import Image

    cfg = ServeConfig(out=tmp_path, transport=transport, key=KEY, encrypt=encrypt)
    with LocalServer(cfg) as srv:
        result = send(srv.port, sender(model), frames, transport, KEY, encrypt)
        stats = srv.call(lambda: dict(srv.server.stats))
    assert result.summary["frames"] == len(frames) and stats["auth_failures"] == 0
    pngs = sorted((tmp_path / result.summary["session"]).glob("frame_*.png"))
    assert all((s.frame == Image.open(p)).all() for s, p in zip(result.shown, pngs, strict=True))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize(("server_key", "sender_key", "encrypt"), [
    (KEY, OTHER, False), (KEY, None, False), (None, KEY, False), pytest.param(KEY, OTHER, True, marks=needs_aead),
    pytest.param(KEY, KEY, "sender-only", marks=needs_aead)])
def test_wrong_or_missing_key_is_a_one_line_refusal(tmp_path, model, frames, transport, server_key, sender_key,
                                                    encrypt):
    cfg = ServeConfig(out=tmp_path, transport=transport, key=server_key, encrypt=encrypt is True)
    with LocalServer(cfg) as srv:
        with pytest.raises(PeerError, match="authentication failed") as err:
            send(srv.port, sender(model), frames[:1], transport, sender_key, bool(encrypt))
        stats = srv.call(lambda: dict(srv.server.stats))
        assert srv.call(lambda: len(srv.server.table)) == 0
    assert "\n" not in str(err.value)
    assert stats["auth_failures"] >= 1 and stats["sessions_opened"] == 0


def test_send_command_with_the_wrong_key_exits_non_zero(tmp_path, capsys):
    (tmp_path / "good").write_bytes(KEY)
    (tmp_path / "bad").write_bytes(OTHER)
    with LocalServer(ServeConfig(out=tmp_path / "out", key=KEY)) as srv:
        base = ["send", "static", "-m", "sphere64", "--frames", "2", "--to", f"127.0.0.1:{srv.port}", "--json"]
        assert cli_main([*base, "--key-file", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("semcom: error:") and "authentication failed" in err and "\n" not in err
        assert cli_main([*base, "--key-file", str(tmp_path / "good")]) == 0
        assert json.loads(capsys.readouterr().out)["frames"] == 2


def test_forged_and_replayed_packets_never_touch_a_session(tmp_path, model, frames):
    """A DATA packet under the wrong key, or a replay of an old sequence number, is dropped and counted; the
    session's frame counter, memory and sequence number stay as they were."""
    with LocalServer(ServeConfig(out=tmp_path, transport="udp", key=KEY)) as srv:
        s = sender(model)
        result = send(srv.port, s, frames[:3], "udp", KEY, state_path=tmp_path / "keep.npz")
        sid = int(result.summary["session"], 16)
        session = srv.call(lambda: srv.server.table.get(sid))
        before = srv.call(lambda: (session.endpoint.t, session.endpoint.digest(), session.last_seq))
        data = FRAME_NUMBER.pack(3) + b"\x00\x01\x02"
        forged = Sealer(OTHER).seal(Kind.DATA, sid, before[2] + 1, data)
        replays = [Sealer(KEY).seal(Kind.DATA, sid, seq, data) for seq in range(1, before[2])]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            for packet in [forged, *replays]:
                sock.sendto(packet, ("127.0.0.1", srv.port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(2048)                 # no answer to any of them
        stats = srv.call(lambda: dict(srv.server.stats))
        assert srv.call(lambda: (session.endpoint.t, session.endpoint.digest(), session.last_seq)) == before
    assert stats["auth_failures"] == 1 and stats["replays"] == len(replays)


def test_replayed_or_stale_hello_cannot_reopen_a_session(tmp_path, model, frames):
    """A HELLO captured on the wire and replayed once its session ended (or one whose clock is off by more than
    the window) opens nothing."""
    import time

    from semcom.live.server import hello_payload

    header = sender(model).header(0)
    sealer = Sealer(KEY)

    def hello(sid: int, sent: float) -> bytes:
        return sealer.seal(Kind.HELLO, sid, 1, hello_payload(header, {"time": sent}))

    with LocalServer(ServeConfig(out=tmp_path, transport="udp", key=KEY)) as srv:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)

            def ask(packet: bytes):
                sock.sendto(packet, ("127.0.0.1", srv.port))
                return sealer.open(sock.recvfrom(4096)[0])

            captured = hello(42, time.time())
            assert ask(captured).kind is Kind.WELCOME
            assert ask(sealer.seal(Kind.BYE, 42, 2, b"{}")).kind is Kind.DONE       # the session ends
            replay = ask(captured)
            assert replay.kind is Kind.ERROR and b"used already" in replay.payload
            stale = ask(hello(43, time.time() - 3600))
            assert stale.kind is Kind.ERROR and b"not fresh" in stale.payload
        assert srv.call(lambda: len(srv.server.table)) == 0
