"""A loss and delay shim in front of a UDP server: a relay that drops, duplicates, delays and reorders.

``LossShim(target, loss=0.1, duplicate=0.05, delay=0.002, jitter=0.004)`` listens on an ephemeral loopback
port; every datagram a sender sends there goes on to ``target`` and every reply comes back, each one
independently lost with probability ``loss``, sent twice with probability ``duplicate``, and held for
``delay + U(0, jitter)`` seconds (so datagrams overtake each other: reordering). It acts on both directions,
so forward packets and feedback suffer alike (``reply_loss`` sets the feedback's loss apart). Seeded: the same
seed draws the same fates in the same order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

#: Senders a shim relays for at once (one upstream socket each).
MAX_PEERS = 64


@dataclass
class ShimStats:
    forwarded: int = 0
    lost: int = 0
    duplicated: int = 0


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_datagram):
        self.on_datagram = on_datagram
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass


@dataclass
class LossShim:
    """A UDP relay to ``target`` (host, port) with seeded loss, duplication, delay and jitter."""

    target: tuple[str, int]
    loss: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    host: str = "127.0.0.1"
    reply_loss: float | None = None   # loss of the server's datagrams alone (None: ``loss``)
    stats: ShimStats = field(default_factory=ShimStats)

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1)")
        if self.reply_loss is not None and not 0.0 <= self.reply_loss <= 1.0:
            raise ValueError("reply_loss must lie in [0, 1]")
        self.rng = np.random.default_rng(self.seed)
        self._upstream: dict = {}
        self.port: int | None = None

    async def start(self) -> int:
        """Bind the shim; returns its port."""
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(lambda: _Side(self._from_sender),
                                                             local_addr=(self.host, 0))
        self.port = self._front.get_extra_info("sockname")[1]
        return self.port

    def close(self) -> None:
        self._front.close()
        for transport in self._upstream.values():
            transport.close()

    def _relay(self, transport, data: bytes, addr=None) -> None:
        """Send ``data`` on ``transport`` with this shim's fates: lost, or once or twice after a delay
        (``addr``: a reply, to that sender)."""
        loss = self.reply_loss if addr is not None and self.reply_loss is not None else self.loss
        if self.rng.random() < loss:
            self.stats.lost += 1
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        self.stats.duplicated += copies - 1
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            wait = self.delay + self.jitter * float(self.rng.random())
            self.stats.forwarded += 1
            args = (data,) if addr is None else (data, addr)
            if wait > 0:
                loop.call_later(wait, _send, transport, *args)
            else:
                _send(transport, *args)

    def _from_sender(self, data: bytes, addr) -> None:
        up = self._upstream.get(addr)
        if up is None:
            if len(self._upstream) >= MAX_PEERS:
                return
            asyncio.get_running_loop().create_task(self._open_upstream(addr, data))
            return
        self._relay(up, data)

    async def _open_upstream(self, addr, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        up, _ = await loop.create_datagram_endpoint(
            lambda: _Side(lambda data, _: self._relay(self._front, data, addr)), remote_addr=self.target)
        self._upstream[addr] = up
        self._relay(up, first)


def _send(transport, *args) -> None:
    if not transport.is_closing():
        transport.sendto(*args)
