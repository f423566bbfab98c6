"""Sessions of the live server: resume after a disconnect (memories checked first), idle timeout, limits."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest

from semcom.cli import main as cli_main
from semcom.config import LinkConfig, ProtectionConfig
from semcom.live.client import PeerError, SendConfig, send_frames
from semcom.live.local import LocalServer
from semcom.live.schemes import SphereSender
from semcom.live.server import ServeConfig
from semcom.live.state import SenderState, load_state, save_state
from semcom.sources import open_source


@pytest.fixture(scope="module")
def model():
    from semcom.models import load_autoencoder

    return load_autoencoder()


@pytest.fixture(scope="module")
def frames():
    return open_source("cam_shake", frames=8).frames


def sender(model, m_max: int = 256) -> SphereSender:
    hp = model.hparams
    return SphereSender(model, LinkConfig(d=hp["d"], height=hp["height"], width=hp["width"], m_max=m_max),
                        ProtectionConfig())


def send(port: int, s: SphereSender, frames, transport: str = "tcp", **kw):
    return asyncio.run(send_frames(SendConfig(port=port, transport=transport, timeout=2, rto=0.02), s, frames, **kw))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_resume_after_disconnect_checks_the_memories(tmp_path, model, frames, transport):
    state = tmp_path / "state.npz"
    with LocalServer(ServeConfig(out=tmp_path / "out", transport=transport)) as srv:
        first = send(srv.port, sender(model), frames[:5], transport, state_path=state)
        stale = tmp_path / "stale.npz"
        shutil.copy(state, stale)
        resumed = sender(model)
        second = send(srv.port, resumed, frames[5:], transport, state=load_state(state), state_path=state)
        assert second.summary["session"] == first.summary["session"] and resumed.t == 8
        sid = int(first.summary["session"], 16)
        assert srv.call(lambda: srv.server.table.get(sid).endpoint.digest()) == resumed.digest()
        with pytest.raises(PeerError, match="cannot resume session .*: the sender.s state is older") as err:
            send(srv.port, sender(model), frames[:1], transport, state=load_state(stale))
        assert "\n" not in str(err.value)
        # a sender that lost the ACK of its last frame: a fresh sequence number, but the memory of a frame before
        old = load_state(stale)
        save_state(stale, SenderState(old.session, 10_000, old.header, old.arrays))
        with pytest.raises(PeerError, match="cannot resume session .*: the memories differ .*nothing was decoded"):
            send(srv.port, sender(model), frames[:1], transport, state=load_state(stale))
        assert srv.call(lambda: srv.server.table.get(sid).endpoint.t) == 8   # nothing decoded
    pngs = sorted((tmp_path / "out" / first.summary["session"]).glob("frame_*.png"))
    assert [p.name for p in pngs] == [f"frame_{t:06d}.png" for t in range(8)]


def test_send_command_resumes_with_a_state_file(tmp_path, capsys):
    state = tmp_path / "s.npz"
    with LocalServer(ServeConfig(out=tmp_path / "out")) as srv:
        argv = ["send", "cam_shake", "-m", "sphere64", "--frames", "3", "--to", f"127.0.0.1:{srv.port}", "--json",
                "--state", str(state)]
        assert cli_main(argv) == 0
        first = json.loads(capsys.readouterr().out)
        assert cli_main(argv) == 0
        second = json.loads(capsys.readouterr().out)
        assert second["resumed"] and second["session"] == first["session"] and second["t"] == 6
        # another link config cannot resume this session
        assert cli_main([*argv, "--tau", "0.5"]) == 2
        assert "another link configuration" in capsys.readouterr().err


def test_idle_sessions_time_out_and_cannot_be_resumed(tmp_path, model, frames):
    state = tmp_path / "state.npz"
    with LocalServer(ServeConfig(out=tmp_path / "out", idle_timeout=0.3)) as srv:
        first = send(srv.port, sender(model), frames[:2], state_path=state)
        deadline = time.monotonic() + 10
        while srv.call(lambda: len(srv.server.table)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.call(lambda: len(srv.server.table)) == 0
        with pytest.raises(PeerError, match="holds no such session"):
            send(srv.port, sender(model), frames[:1], state=load_state(state))
    written = json.loads((tmp_path / "out" / first.summary["session"] / "session.json").read_text())
    assert written["frames"] == 2


def test_session_and_memory_limits_are_enforced(tmp_path, model, frames):
    with LocalServer(ServeConfig(out=tmp_path, max_sessions=1, max_memory=100_000)) as srv:
        held = send(srv.port, sender(model, m_max=16), frames[:1], state_path=tmp_path / "keep.npz")
        assert held.summary["frames"] == 1                         # kept open for a resume: the table is full
        with pytest.raises(PeerError, match="the server is full"):
            send(srv.port, sender(model, m_max=16), frames[:1])
    with LocalServer(ServeConfig(out=tmp_path, max_memory=100_000)) as srv:
        with pytest.raises(PeerError, match="m_max=1024.* needs .* bytes"):
            send(srv.port, sender(model, m_max=1024), frames[:1])
        assert send(srv.port, sender(model, m_max=64), frames[:2]).summary["frames"] == 2


@pytest.mark.parametrize("scheme", ["sphere64", "hyperprior"])
def test_resume_after_the_ack_of_the_last_frame_was_lost(tmp_path, model, frames, scheme):
    """The server decodes frame 3, every reply from then on is lost, the sender gives up: its state file holds
    both its state before frame 3 and its state had frame 3 arrived, and the resume picks the one the server
    holds. Nothing is decoded twice; the memories end identical."""
    if scheme == "hyperprior":
        from semcom.live.schemes import codec_sender
        from semcom.models.zoo import load_model
        from semcom.schemes.codec_link import CodecLinkConfig

        codec = load_model("hyperprior")
        make = lambda: codec_sender(codec, CodecLinkConfig(quality=1))  # noqa: E731
    else:
        make = lambda: sender(model)  # noqa: E731
    state = tmp_path / "state.npz"
    clip = frames[:6]
    with LocalServer(ServeConfig(out=tmp_path / "out", transport="udp"), shim=dict(seed=0)) as srv:
        def cut_replies(shown) -> None:
            if len(shown_so_far) == 2:
                srv.shim.reply_loss = 1.0
            shown_so_far.append(shown)

        shown_so_far: list = []
        with pytest.raises(PeerError, match="no answer"):
            asyncio.run(send_frames(SendConfig(port=srv.port, transport="udp", timeout=0.5, rto=0.05), make(),
                                    clip[:4], state_path=state, on_frame=cut_replies))
        assert load_state(state).pending is not None
        sid = load_state(state).session
        assert srv.call(lambda: srv.server.table.get(sid).endpoint.t) == 4      # frame 3 was decoded
        srv.shim.reply_loss = None
        resumed = make()
        result = send(srv.port, resumed, clip[4:], "udp", state=load_state(state), state_path=state)
        assert result.summary["session"] == f"{sid:016x}" and resumed.t == 6
        assert srv.call(lambda: srv.server.table.get(sid).endpoint.digest()) == resumed.digest()
    written = json.loads((tmp_path / "out" / f"{sid:016x}" / "session.json").read_text())
    assert written["frames"] == 6 and written["t"] == 6
