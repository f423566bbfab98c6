"""A sender's state file: what ``semcom send --state F`` needs to resume its session after a disconnect.

One ``.npz`` (read without pickle): the session id and the next sequence number, the scheme's stream header
(the link configuration, compared byte for byte on resume) and the transmitter's exact state after the last
frame the receiver acknowledged (memory, frame counter, adaptive counts) and, if the run ended during a frame's
exchange, the state had that frame arrived. The server compares the memory digests of these candidates with
its own before it decodes anything (:meth:`semcom.live.server.LiveServer._resume`) and resumes the one that
matches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semcom.errors import ConfigError

_META = "__meta__"
_HEADER = "__header__"


_PENDING = "pending:"


@dataclass(frozen=True)
class SenderState:
    """A session's id, next sequence number and link header; the transmitter's state after its last acknowledged
    frame (``arrays``) and, when a frame was in flight as the run ended, its state had that frame arrived
    (``pending``): the server, which may or may not have decoded it, resumes whichever its memory matches."""

    session: int
    seq: int
    header: bytes
    arrays: dict[str, np.ndarray]
    pending: dict[str, np.ndarray] | None = None

    def candidates(self) -> list[dict[str, np.ndarray]]:
        return [self.arrays] + ([self.pending] if self.pending is not None else [])


def save_state(path: str | os.PathLike, state: SenderState) -> None:
    """Write ``state`` to ``path`` atomically (a half-written file never replaces a good one)."""
    path = Path(path)
    meta = json.dumps({"session": f"{state.session:016x}", "seq": state.seq}).encode()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pending = {_PENDING + k: v for k, v in (state.pending or {}).items()}
        np.savez(f, **state.arrays, **pending, **{_META: np.frombuffer(meta, np.uint8),
                                                  _HEADER: np.frombuffer(state.header, np.uint8)})
    tmp.replace(path)


def load_state(path: str | os.PathLike) -> SenderState:
    """Read a state file; anything unreadable is a one-line :class:`ConfigError`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode())
        header = arrays.pop(_HEADER).tobytes()
        pending = {k.removeprefix(_PENDING): arrays.pop(k) for k in list(arrays) if k.startswith(_PENDING)}
        return SenderState(int(meta["session"], 16), int(meta["seq"]), header, arrays, pending or None)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read state file {path}: {exc}") from None
