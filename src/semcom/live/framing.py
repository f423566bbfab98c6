"""The live link's socket packet: a 21-byte header, the payload, and the seal under a pre-shared key.

Header (big-endian)::

    magic "SL" (2) | version (1) | kind (1) | flags (1) | session id (8) | seq (4) | length (4)

``length`` counts the bytes after the header (payload and seal), so a TCP reader knows where the next
packet starts and refuses one above ``--max-packet-bytes`` before reading it; on UDP one datagram is one
packet and must be exactly that long. ``seq`` numbers a sender's requests in its session (the server
refuses any below the last one it answered: replays); a reply carries the ``seq`` of the request it answers.

Three seals, one per server mode:

* open (no key): nothing; the server accepts anyone and says so at start;
* ``hmac`` (``--key-file``): HMAC-SHA256 of header and payload, 32 bytes, under the key;
* ``aead`` (``--key-file --encrypt``): the payload encrypted with ChaCha20-Poly1305 (the ``cryptography``
  package) under a key derived from the pre-shared one, a random 12-byte nonce first, the header as
  associated data; 28 bytes.

A packet whose header, length or seal is wrong raises :class:`PacketError` (:class:`AuthError` for the seal);
the caller drops and counts it, and nothing of it reaches a session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from semcom.errors import ConfigError, SemcomError

MAGIC = b"SL"
VERSION = 1
HEADER = struct.Struct(">2sBBBQII")
HEADER_SIZE = HEADER.size
FLAG_MAC = 0x01
FLAG_AEAD = 0x02
MAC_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
#: Default largest packet a server reads (``--max-packet-bytes``): a 256x256 codec frame fits many times over.
DEFAULT_MAX_PACKET = 1 << 20
#: Shortest pre-shared key a key file may hold.
MIN_KEY_BYTES = 16


class Kind(IntEnum):
    """What a packet is. Requests go from sender to server, replies back, so neither passes for the other."""

    HELLO = 1      # request: open or resume a session (the scheme's stream header, protection, memory digest)
    DATA = 2       # request: frame number and one packet of the scheme (a frame's message, a refresh, ...)
    BYE = 3        # request: end of the run; the server writes session.json and answers with its totals
    WELCOME = 16   # reply to HELLO: the session id and, on resume, the server's frame counter
    FEEDBACK = 17  # reply to DATA: the receiver's feedback (semcom.live.feedback)
    DONE = 18      # reply to BYE: the server's session.json
    ERROR = 19     # reply: a one-line reason (sealed when the request was authentic, else open)


REQUESTS = frozenset({Kind.HELLO, Kind.DATA, Kind.BYE})


class PacketError(SemcomError):
    """A packet that is not a well-formed live-link packet (dropped and counted)."""


class AuthError(PacketError):
    """A packet whose seal does not verify under this end's key, or that lacks the seal it must carry."""


@dataclass(frozen=True)
class Packet:
    kind: Kind
    session: int
    seq: int
    payload: bytes
    flags: int = 0


def read_key_file(path: str | os.PathLike) -> bytes:
    """The pre-shared key in ``path`` (surrounding whitespace stripped), at least :data:`MIN_KEY_BYTES` bytes."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"key file {path} holds {len(key)} bytes, at least {MIN_KEY_BYTES} are needed")
    return key


def peek_header(data: bytes) -> tuple[Kind, int, int, int, int]:
    """``(kind, flags, session, seq, length)`` of a packet's header, checked for magic, version and kind."""
    if len(data) < HEADER_SIZE:
        raise PacketError(f"truncated packet: {len(data)} bytes, the header alone is {HEADER_SIZE}")
    magic, version, kind, flags, session, seq, length = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise PacketError("not a semcom live packet (bad magic or version)")
    try:
        kind = Kind(kind)
    except ValueError:
        raise PacketError(f"unknown packet kind {kind}") from None
    if flags & ~(FLAG_MAC | FLAG_AEAD):
        raise PacketError(f"unknown packet flags {flags:#04x}")
    return kind, flags, session, seq, length


class Sealer:
    """Seals and opens packets for one key mode: open (``key=None``), HMAC-SHA256, or AEAD (``encrypt``)."""

    def __init__(self, key: bytes | None = None, encrypt: bool = False):
        if encrypt and key is None:
            raise ConfigError("--encrypt needs a pre-shared key (--key-file)")
        self.key = key
        self.mode = "open" if key is None else ("aead" if encrypt else "hmac")
        self._aead = None
        if self.mode == "aead":
            try:
                from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
            except ImportError:
                raise ConfigError("--encrypt needs the 'cryptography' package (pip install cryptography)") from None
            self._aead = ChaCha20Poly1305(hmac.new(key, b"semcom-live-aead", hashlib.sha256).digest())

    @property
    def flags(self) -> int:
        return {"open": 0, "hmac": FLAG_MAC, "aead": FLAG_AEAD}[self.mode]

    @property
    def overhead(self) -> int:
        """Bytes of seal per packet."""
        return {"open": 0, "hmac": MAC_SIZE, "aead": NONCE_SIZE + TAG_SIZE}[self.mode]

    def seal(self, kind: Kind, session: int, seq: int, payload: bytes, open_: bool = False) -> bytes:
        """The packet on the wire; ``open_``: without a seal whatever the mode (an ERROR to an unknown key)."""
        mode = "open" if open_ else self.mode
        length = len(payload) + (0 if open_ else self.overhead)
        header = HEADER.pack(MAGIC, VERSION, kind, 0 if open_ else self.flags, session, seq, length)
        if mode == "open":
            return header + payload
        if mode == "hmac":
            return header + payload + hmac.new(self.key, header + payload, hashlib.sha256).digest()
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + self._aead.encrypt(nonce, payload, header)

    def open(self, data: bytes, max_packet: int = DEFAULT_MAX_PACKET, allow_open_error: bool = False) -> Packet:
        """Parse and verify one whole packet; raises :class:`PacketError` or :class:`AuthError`.

        ``allow_open_error``: a sender accepts an unsealed ERROR (a server that cannot verify its key says so
        in the open)."""
        kind, flags, session, seq, length = peek_header(data)
        if len(data) > max_packet:
            raise PacketError(f"packet of {len(data)} bytes, the limit is {max_packet}")
        if HEADER_SIZE + length != len(data):
            raise PacketError(f"packet declares {length} bytes after its header, carries {len(data) - HEADER_SIZE}")
        header, body = data[:HEADER_SIZE], data[HEADER_SIZE:]
        if flags == 0 and (self.mode == "open" or (allow_open_error and kind is Kind.ERROR)):
            return Packet(kind, session, seq, body, flags)
        if flags != self.flags:
            have = {0: "no seal", FLAG_MAC: "an HMAC", FLAG_AEAD: "AEAD encryption"}.get(flags, "both seals")
            want = {"open": "no key", "hmac": "an HMAC key", "aead": "AEAD encryption"}[self.mode]
            raise AuthError(f"packet carries {have}, this end uses {want}")
        if self.mode == "hmac":
            if len(body) < MAC_SIZE:
                raise AuthError("packet too short for its HMAC")
            payload, mac = body[:-MAC_SIZE], body[-MAC_SIZE:]
            if not hmac.compare_digest(mac, hmac.new(self.key, header + payload, hashlib.sha256).digest()):
                raise AuthError("packet fails its HMAC (wrong key or altered)")
            return Packet(kind, session, seq, payload, flags)
        if len(body) < NONCE_SIZE + TAG_SIZE:
            raise AuthError("packet too short for its AEAD nonce and tag")
        from cryptography.exceptions import InvalidTag

        try:
            payload = self._aead.decrypt(body[:NONCE_SIZE], body[NONCE_SIZE:], header)
        except InvalidTag:
            raise AuthError("packet fails its AEAD tag (wrong key or altered)") from None
        return Packet(kind, session, seq, payload, flags)
