"""A salted hash tree over a prototype memory: where two memories differ, in O(log M) round trips.

The slots ``0 .. M-1`` are the leaves of a tree of fan-out ``F`` and depth ``D = max(1, ceil(log_F M))``:
node ``i`` of level ``L`` covers slots ``[i F^L, (i+1) F^L)`` (level 0: one slot each; level ``D``: the
root, every slot). Its hash is a keyed BLAKE2b (RFC 7693) of the level, the node, the number of slots it
holds and their 64-bit slot digests (keyed BLAKE2b of each slot's vector and recency, the state
:meth:`PrototypeMemory.digest` covers), cut to :data:`HASH_BITS` bits. The key is the round's salt, so a
collision in one round is independent of the next (the Merkle tree of anti-entropy repair, e.g. Dynamo's).

Locating the differing slots is a descent: the transmitter sends the hashes of the children of the nodes
still in doubt, the receiver answers with the bitmap of the children whose hash differs from its own, and
the next level expands only those. Every level is one round trip, ``D <= ceil(log_F M) + 1`` in all
(:func:`locate`); when most slots differ, the last level is the flat listing of every slot's hash. A node
only exists while it holds a slot (``i F^L < M``), so no hash is sent for empty parts of the tree.

Also here: the short per-frame checks of :mod:`semcom.link.session` (``tree`` protocol): a keyed hash of
the whole memory (:func:`memory_check`) and of one slot (:func:`slot_check`), salted with the frame number.
"""

from __future__ import annotations

import hashlib

import numpy as np

from semcom.memory import PrototypeMemory

HASH_BITS = 16      # bits of a node hash in a TREE packet
CHUNK = 32          # node hashes per TREE packet (32 x 16 bits: a packet of ~600 bits, like an AUDIT chunk)


def depth(m: int, fanout: int) -> int:
    """``D = max(1, ceil(log_F m))``: the levels above the leaves (computed in integers)."""
    d, cover = 1, fanout
    while cover < m:
        d, cover = d + 1, cover * fanout
    return d


def _key(salt: int) -> bytes:
    return (salt % (1 << 64)).to_bytes(8, "big")


def slot_digests(memory: PrototypeMemory, salt: int) -> list[bytes]:
    """The keyed 64-bit digest of every stored slot (vector bytes and recency)."""
    data = memory.prototypes.contiguous().numpy()
    used = np.ascontiguousarray(memory.last_used)
    key = _key(salt)
    return [hashlib.blake2b(data[s].tobytes() + used[s : s + 1].tobytes(), digest_size=8, key=key).digest()
            for s in range(memory.size)]


def node_hash(digests: list[bytes], level: int, node: int, fanout: int, m: int, salt: int) -> int:
    """The :data:`HASH_BITS`-bit hash of node ``node`` at ``level`` of a memory of ``m`` slots whose slot
    digests are ``digests`` (a memory holding fewer slots than ``m`` hashes the ones it holds)."""
    width = fanout**level
    lo, hi = node * width, min((node + 1) * width, m)
    part = digests[lo:hi]
    h = hashlib.blake2b(level.to_bytes(1, "big") + node.to_bytes(4, "big") + len(part).to_bytes(4, "big"),
                        digest_size=8, key=_key(salt))
    for p in part:
        h.update(p)
    return int.from_bytes(h.digest(), "big") >> (64 - HASH_BITS)


def children(query: list[int], level: int, fanout: int, m: int) -> list[int]:
    """The nodes of ``level`` under the nodes ``query`` of ``level + 1`` that hold a slot, in order."""
    width = fanout**level
    return [c for q in query for c in range(q * fanout, (q + 1) * fanout) if c * width < m]


def chunk_count(n: int) -> int:
    """TREE packets for ``n`` node hashes (at least one: an empty level still gets its answer)."""
    return max(1, -(-n // CHUNK))


def hashes(memory: PrototypeMemory, nodes: list[int], level: int, fanout: int, m: int, salt: int,
           digests: list[bytes] | None = None) -> list[int]:
    """The hashes of ``nodes`` of ``level`` (``digests``: the memory's :func:`slot_digests`, if known)."""
    digests = slot_digests(memory, salt) if digests is None else digests
    return [node_hash(digests, level, n, fanout, m, salt) for n in nodes]


def differing(memory: PrototypeMemory, nodes: list[int], got: list[int], level: int, fanout: int, m: int,
              salt: int) -> list[int]:
    """The nodes among ``nodes`` whose hash ``got`` (the other memory's) differs from this memory's."""
    mine = hashes(memory, nodes, level, fanout, m, salt)
    return [n for n, a, b in zip(nodes, mine, got, strict=True) if a != b]


def locate(tx: PrototypeMemory, rx: PrototypeMemory, fanout: int, salt: int) -> tuple[list[int], int]:
    """The descent of one round between two memories (the transmitter's ``tx`` is the reference, of ``M``
    slots): the slots whose leaf hash differs, and the round trips it took (one per level)."""
    m = tx.size
    level, query, trips = depth(m, fanout), [0], 0
    dt, dr = slot_digests(tx, salt), slot_digests(rx, salt)
    while level > 0 and query:
        level -= 1
        nodes = children(query, level, fanout, m)
        got = [node_hash(dt, level, n, fanout, m, salt) for n in nodes]
        query = [n for n, h in zip(nodes, got, strict=True) if node_hash(dr, level, n, fanout, m, salt) != h]
        trips += 1
    return (query if level == 0 else []), trips


def _check(data: bytes, t: int, bits: int) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=_key(t)).digest(), "big") >> (64 - bits)


def memory_check(memory: PrototypeMemory, t: int, bits: int) -> int:
    """A ``bits``-bit keyed hash of the whole memory (size, vectors, recency), salted with frame ``t``."""
    return _check(memory.size.to_bytes(4, "big") + memory.prototypes.contiguous().numpy().tobytes()
                  + np.ascontiguousarray(memory.last_used).tobytes(), t, bits)


def slot_check(memory: PrototypeMemory, slot: int, t: int, bits: int) -> int | None:
    """A ``bits``-bit keyed hash of one slot (vector, recency), salted with frame ``t``; None if not stored."""
    if not 0 <= slot < memory.size:
        return None
    return _check(slot.to_bytes(4, "big") + memory.prototypes[slot].contiguous().numpy().tobytes()
                  + memory.last_used[slot : slot + 1].tobytes(), t, bits)
