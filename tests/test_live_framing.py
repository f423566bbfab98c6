"""The live link's packet framing, its seals under a pre-shared key, and the feedback's bytes."""

from __future__ import annotations

import importlib.util

import pytest

from semcom.commands.serve import parse_address
from semcom.errors import ConfigError
from semcom.link import protected as pk
from semcom.link.session import Feedback
from semcom.live import feedback
from semcom.live.framing import HEADER_SIZE, AuthError, Kind, PacketError, Sealer, read_key_file

KEY = b"k" * 32
needs_aead = pytest.mark.skipif(importlib.util.find_spec("cryptography") is None,
                                reason="--encrypt needs the cryptography package, not installed here")


def sealer_for(mode: str) -> Sealer:
    return Sealer() if mode == "open" else Sealer(KEY, encrypt=mode == "aead")


@pytest.mark.parametrize("mode", ["open", "hmac", pytest.param("aead", marks=needs_aead)])
def test_seal_and_open_round_trip(mode):
    sealer = sealer_for(mode)
    data = sealer.seal(Kind.DATA, 0xABCDEF0123456789, 7, b"payload")
    assert len(data) == HEADER_SIZE + len(b"payload") + sealer.overhead
    pkt = sealer.open(data)
    assert (pkt.kind, pkt.session, pkt.seq, pkt.payload) == (Kind.DATA, 0xABCDEF0123456789, 7, b"payload")
    if sealer.mode == "aead":
        assert b"payload" not in data


@pytest.mark.parametrize("mode", ["hmac", pytest.param("aead", marks=needs_aead)])
def test_any_altered_byte_fails_the_seal(mode):
    sealer = sealer_for(mode)
    data = sealer.seal(Kind.DATA, 1, 2, b"some payload bytes")
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(PacketError):
            sealer.open(bytes(bad))


def test_wrong_key_missing_seal_and_foreign_seal_are_auth_errors():
    packet = Sealer(KEY).seal(Kind.HELLO, 1, 1, b"x")
    with pytest.raises(AuthError, match="fails its HMAC"):
        Sealer(b"q" * 32).open(packet)
    with pytest.raises(AuthError, match="carries no seal"):
        Sealer(KEY).open(Sealer().seal(Kind.HELLO, 1, 1, b"x"))
    with pytest.raises(AuthError, match="carries an HMAC"):
        Sealer().open(packet)
    if importlib.util.find_spec("cryptography") is not None:
        with pytest.raises(AuthError, match="AEAD"):
            Sealer(KEY, encrypt=True).open(Sealer(b"q" * 32, encrypt=True).seal(Kind.DATA, 1, 1, b"x"))
    # a sender accepts the server's open ERROR (a server that cannot verify its key), nothing else open
    err = Sealer(KEY).seal(Kind.ERROR, 1, 1, b"authentication failed", open_=True)
    assert Sealer(KEY).open(err, allow_open_error=True).payload == b"authentication failed"
    with pytest.raises(AuthError):
        Sealer(KEY).open(err)


@pytest.mark.parametrize("data", [b"", b"SL", b"XX" + bytes(40), b"SL\x09" + bytes(40)])
def test_garbage_is_rejected(data):
    with pytest.raises(PacketError):
        Sealer().open(data)


def test_length_field_and_limit_are_checked():
    data = Sealer().seal(Kind.DATA, 1, 1, b"abcdef")
    with pytest.raises(PacketError, match="declares"):
        Sealer().open(data[:-1])
    with pytest.raises(PacketError, match="declares"):
        Sealer().open(data + b"\0")
    with pytest.raises(PacketError, match="limit"):
        Sealer().open(data, max_packet=len(data) - 1)


def test_key_file(tmp_path):
    (tmp_path / "k").write_bytes(b"  0123456789abcdef0123\n")
    assert read_key_file(tmp_path / "k") == b"0123456789abcdef0123"
    (tmp_path / "short").write_bytes(b"abc")
    with pytest.raises(ConfigError, match="at least 16"):
        read_key_file(tmp_path / "short")
    with pytest.raises(ConfigError, match="cannot read key file"):
        read_key_file(tmp_path / "missing")
    with pytest.raises(ConfigError, match="needs a pre-shared key"):
        Sealer(None, encrypt=True)


@pytest.mark.parametrize("fb", [
    Feedback(1, ack=True),
    Feedback(pk.REQUEST_BITS, request=pk.Request.DAMAGED, damaged=True),
    Feedback(pk.REQUEST_BITS, request=pk.Request.RESYNC),
    Feedback(pk.MORE_BITS, more=True, damaged=True),
    Feedback(37, slots=[0, 5, 36]),
])
def test_feedback_round_trip(fb):
    reply = feedback.decode(feedback.encode(fb, drop=fb.damaged, memory_size=37), 37)
    got = reply.feedback
    assert (got.bits, got.ack, got.request, got.slots, got.damaged, got.more) == \
        (fb.bits, fb.ack, fb.request, fb.slots, fb.damaged, fb.more)
    assert reply.drop == fb.damaged


@pytest.mark.parametrize("data", [b"", b"\x40\0\0\0\0", b"\x10\0\0\0\0", b"\x10\0\0\0\0\x09", b"\x01\0\0\0\0\0",
                                  b"\x20\0\0\0\0\0\0\0\x08"])
def test_malformed_feedback_is_rejected(data):
    with pytest.raises(PacketError):
        feedback.decode(data, 8)


def test_parse_address():
    assert parse_address("127.0.0.1:9000", "--to") == ("127.0.0.1", 9000)
    assert parse_address("[::1]:0", "--listen") == ("::1", 0)
    for bad in ("localhost", "host:", ":80", "h:70000", "h:x"):
        with pytest.raises(ConfigError, match="--to"):
            parse_address(bad, "--to")
