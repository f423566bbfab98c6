"""The live link end to end: `semcom serve` and `semcom send` as two real processes on loopback (TCP and UDP),
and in-process runs through a lossy UDP shim. What the server decodes must equal, bit for bit, the
transmitter's record of what the receiver shows."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcom.cli import main as cli_main
from semcom.config import LinkConfig, ProtectionConfig
from semcom.live.client import SendConfig, send_frames
from semcom.live.local import LocalServer
from semcom.live.schemes import SphereSender, codec_sender
from semcom.live.server import ServeConfig
from semcom.live.sessions import SUMMARY_KEYS
from semcom.sources import open_source

SEMCOM = [sys.executable, "-m", "semcom.cli"]


def start_server(out: Path, *args: str) -> subprocess.Popen:
    """`semcom serve --json` in a child process on an ephemeral port (read its port with :func:`port_of`)."""
    return subprocess.Popen([*SEMCOM, "serve", "--listen", "127.0.0.1:0", "-o", str(out), "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def listening(proc: subprocess.Popen) -> dict:
    """The server's first line: its ``listening`` event (port, auth mode, ...)."""
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    event = json.loads(line)
    assert event["event"] == "listening"
    return event


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


#: The UDP server's seal: AEAD where the cryptography package is installed, else HMAC.
UDP_SEAL = ["--encrypt"] if importlib.util.find_spec("cryptography") else []


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """An open TCP server and a keyed UDP server, as processes started together:
    {transport: (port, output folder, process, the sender's key arguments, the server's auth mode)}."""
    root = tmp_path_factory.mktemp("live")
    key = root / "psk"
    key.write_bytes(b"a pre-shared key for the tests, 0123456789")
    keyed = ["--key-file", str(key), *UDP_SEAL]
    procs = {"tcp": (start_server(root / "tcp"), []),
             "udp": (start_server(root / "udp", "--transport", "udp", *keyed), keyed)}
    try:
        events = {t: listening(p) for t, (p, _) in procs.items()}
        yield {t: (events[t]["port"], root / t, p, k, events[t]["auth"]) for t, (p, k) in procs.items()}
    finally:
        for p, _ in procs.values():
            stop(p)


def start_send(port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*SEMCOM, "send", "--to", f"127.0.0.1:{port}", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 90) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out)


def send_process(port: int, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*SEMCOM, "send", "--to", f"127.0.0.1:{port}", "--json", *args], capture_output=True,
                          text=True, timeout=timeout)


def assert_same_pngs(server_dir: Path, record_dir: Path, count: int) -> None:
    """The server's decoded frames equal the sender's record of them, bit for bit."""
    decoded = sorted(server_dir.glob("frame_*.png"))
    assert len(decoded) == count
    for f in decoded:
        assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(record_dir / f.name))), f.name


@pytest.fixture(scope="module")
def sphere_model():
    from semcom.models import load_autoencoder

    return load_autoencoder()


def sphere_sender(model, **protection) -> SphereSender:
    hp = model.hparams
    link = LinkConfig(d=hp["d"], height=hp["height"], width=hp["width"])
    return SphereSender(model, link, ProtectionConfig(**protection))


def check_session(out: Path, summary: dict, rec: Path, frames: int) -> None:
    """The sender's totals match the server's session.json, and the decoded frames its record."""
    assert set(SUMMARY_KEYS) | {"psnr_db"} <= set(summary)
    assert summary["frames"] == frames and summary["lost_frames"] == 0 and summary["psnr_db"] > 10
    session = out / summary["session"]
    on_server = json.loads((session / "session.json").read_text())
    assert set(SUMMARY_KEYS) <= set(on_server) and "psnr_db" not in on_server
    for key in ("frames", "bytes", "hit_rate", "lost_frames", "refreshes", "bits_per_frame_wire"):
        assert on_server[key] == summary[key], key
    assert_same_pngs(session, rec, frames)


def test_hostile_client_against_the_server_processes(servers):
    """Garbage, a truncated header left half-open and a datagram flood: both server processes live on (the
    tests below then use them)."""
    import os
    import socket

    rng = np.random.default_rng(7)
    tcp_port, udp_port = servers["tcp"][0], servers["udp"][0]
    half_open = socket.create_connection(("127.0.0.1", tcp_port), timeout=5)
    half_open.sendall(b"SL\x01")
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as garbage:
        garbage.sendall(os.urandom(4096))
        assert garbage.recv(16) == b""                      # closed: nothing after garbage can be framed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(500):
            sock.sendto(rng.bytes(int(rng.integers(0, 1400))), ("127.0.0.1", udp_port))
    half_open.close()
    for _, _, proc, _, _ in servers.values():
        assert proc.poll() is None


def test_two_concurrent_sender_processes_over_tcp(servers, tmp_path):
    """A sphere64 sender and a codec-link sender at once: two sessions, each its own memory and output."""
    port, out, *_ = servers["tcp"]
    a = start_send(port, "cam_shake", "-m", "sphere64", "--frames", "12", "--record", str(tmp_path / "a"))
    b = start_send(port, "cam_shake", "--frames", "3", "--record", str(tmp_path / "b"))
    sa, sb = finish(a), finish(b)
    assert sa["session"] != sb["session"] and sb["server"]["scheme"] == "hyperprior"
    check_session(out, sa, tmp_path / "a", 12)
    check_session(out, sb, tmp_path / "b", 3)


def test_killed_sender_process_resumes_over_keyed_udp(servers, tmp_path):
    """A keyed UDP link; the sender process is killed (SIGTERM) mid-stream, writes its state and exits 130, and
    a second process resumes the session: every frame decoded once, bit for bit what the senders recorded."""
    port, out, _, key, _ = servers["udp"]
    before = set(out.iterdir()) if out.exists() else set()
    args = ["cam_shake", "-m", "sphere64", "--transport", "udp", "--record", str(tmp_path / "rec"),
            "--state", str(tmp_path / "state.npz"), *key]
    first = start_send(port, *args, "--frames", "200", "--fps", "20")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [d for d in out.iterdir() if d not in before] if out.exists() else []
        if new and len(list(new[0].glob("frame_*.png"))) >= 3:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130 and "interrupted" in err, err
    second = finish(start_send(port, *args, "--frames", "6"))
    assert second["resumed"] and second["session"] == new[0].name and second["server"]["frames"] == second["t"]
    session = out / second["session"]
    assert json.loads((session / "session.json").read_text())["t"] == second["t"] >= 9
    decoded = sorted(session.glob("frame_*.png"))
    recorded = {p.name for p in (tmp_path / "rec").glob("frame_*.png")}
    assert len(decoded) == second["t"] and len(recorded) >= len(decoded) - 1   # a frame cut off by the kill
    for f in decoded:
        if f.name in recorded:
            assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(tmp_path / "rec" / f.name)))


def test_servers_say_who_they_accept(servers):
    assert servers["tcp"][4] == "open" and servers["udp"][4] == ("aead" if UDP_SEAL else "hmac")
    assert "accepting packets from anyone" in servers["tcp"][2].stderr.readline()


def test_serve_errors_are_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli_main(["serve", "--listen", f"127.0.0.1:{port}", "-o", str(tmp_path)]) == 2
    assert cli_main(["serve", "--listen", "127.0.0.1:0", "-o", str(tmp_path), "--encrypt"]) == 2
    assert cli_main(["serve", "--listen", "nowhere", "-o", str(tmp_path)]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 3 and all(e.startswith("semcom: error:") for e in errs)
    assert "cannot listen" in errs[0] and "--key-file" in errs[1] and "--listen" in errs[2]


def test_udp_through_loss_duplication_and_reordering(tmp_path, sphere_model):
    """20 % loss each way, duplicates, jitter: every frame still arrives once, decoded bit-exact, and the two
    memories end identical."""
    frames = open_source("cam_shake", frames=24).frames
    sender = sphere_sender(sphere_model, sync_every=4)
    shim = dict(loss=0.2, duplicate=0.1, delay=0.001, jitter=0.01, seed=3)
    with LocalServer(ServeConfig(out=tmp_path, transport="udp"), shim=shim) as srv:
        result = asyncio.run(send_frames(SendConfig(port=srv.port, transport="udp", rto=0.02), sender, frames,
                                         state_path=tmp_path / "state.npz"))
        digest = srv.call(lambda: srv.server.table.get(int(result.summary["session"], 16)).endpoint.digest())
        assert srv.shim.stats.lost > 0 and srv.shim.stats.duplicated > 0
    assert result.summary["retransmissions"] > 0 and result.summary["frames"] == 24
    assert digest == sender.digest()
    session = tmp_path / result.summary["session"]
    for s, f in zip(result.shown, sorted(session.glob("frame_*.png")), strict=True):
        assert np.array_equal(s.frame, np.asarray(Image.open(f)))


def test_codec_link_over_lossy_udp(tmp_path):
    from semcom.models.zoo import load_model
    from semcom.schemes.codec_link import CodecLinkConfig

    model = load_model("hyperprior")
    sender = codec_sender(model, CodecLinkConfig(quality=2))
    frames = open_source("cam_shake", frames=4).frames
    with LocalServer(ServeConfig(out=tmp_path, transport="udp"), shim=dict(loss=0.25, seed=1)) as srv:
        result = asyncio.run(send_frames(SendConfig(port=srv.port, transport="udp", rto=0.05), sender, frames))
    session = tmp_path / result.summary["session"]
    for s, f in zip(result.shown, sorted(session.glob("frame_*.png")), strict=True):
        assert np.array_equal(s.frame, np.asarray(Image.open(f)))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_unreachable_peer_is_a_one_line_error(tmp_path, capsys, transport):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # free once closed: nobody listens there
    rc = cli_main(["send", "static", "-m", "sphere64", "--frames", "2", "--to", f"127.0.0.1:{port}",
                   "--transport", transport, "--timeout", "1"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and err.startswith("semcom: error:")
    assert "127.0.0.1" in err


def test_token_link_over_lossy_udp(tmp_path):
    """The memory link over the codebook paper's token grid (stream v4) runs over the live link too."""
    from semcom.errors import WeightsError
    from semcom.live.schemes import token_sender
    from semcom.schemes.codebook import VARIANTS, load_variant
    from semcom.schemes.token_link import TokenLinkConfig

    for variant in VARIANTS:
        try:
            model = load_variant(variant)
            break
        except WeightsError:
            continue
    else:
        pytest.skip("no codebook VQ-VAE weights are shipped yet")
    sender = token_sender(model, TokenLinkConfig(variant=variant, tau=0.75))
    frames = open_source("cam_shake", frames=8).frames
    with LocalServer(ServeConfig(out=tmp_path, transport="udp"), shim=dict(loss=0.2, seed=2)) as srv:
        result = asyncio.run(send_frames(SendConfig(port=srv.port, transport="udp", rto=0.05), sender, frames,
                                         state_path=tmp_path / "keep.npz"))
        sid = int(result.summary["session"], 16)
        assert srv.call(lambda: srv.server.table.get(sid).endpoint.digest()) == sender.digest()
    assert result.server["scheme"] == f"codebook-memory:{variant}"
    session = tmp_path / result.summary["session"]
    for s, f in zip(result.shown, sorted(session.glob("frame_*.png")), strict=True):
        assert np.array_equal(s.frame, np.asarray(Image.open(f)))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_codebook_labels_over_the_live_link(tmp_path, transport):
    """The codebook scheme alone (stream v3: each frame's index labels, acknowledged) runs live too, over TCP
    and through a lossy UDP shim; the server shows what the sender recorded, and a session that sends a
    packet of the wrong length changes nothing."""
    from semcom.live.schemes import LabelSender, LabelSession
    from semcom.schemes.codebook import load_variant

    model = load_variant("vqvae+channel")
    sender = LabelSender(model)
    frames = open_source("cam_shake", frames=6).frames
    shim = dict(loss=0.2, seed=3) if transport == "udp" else None
    with LocalServer(ServeConfig(out=tmp_path, transport=transport), shim=shim) as srv:
        result = asyncio.run(send_frames(SendConfig(port=srv.port, transport=transport, rto=0.05), sender, frames))
    assert result.server["scheme"] == "codebook:vqvae+channel" and result.server["frames"] == 6
    session = tmp_path / result.summary["session"]
    for s, f in zip(result.shown, sorted(session.glob("frame_*.png")), strict=True):
        assert np.array_equal(s.frame, np.asarray(Image.open(f)))
    rx = LabelSession(sender.header(), model)
    with pytest.raises(Exception, match="one frame's labels are 64"):
        rx.on_data(0, b"\x00" * 63)
    assert rx.t == 0
