"""Pairs of endpoints by name: frames in, bytes out, bytes in, frames out.

* the memory link over the ``sphere64`` model: :mod:`semcom.link` (stream version 1);
* the memory link over a spatial codec of the zoo: :mod:`semcom.schemes.codec_link` (stream version 2);
* the grounded codebook paper's VQ-VAE, index labels only: :mod:`semcom.schemes.codebook` (stream version 3);
* the memory link over that VQ-VAE's token grid: :mod:`semcom.schemes.token_link` (stream version 4).

:func:`stream_version` tells which one a stream file belongs to, so ``semcom decode`` needs no flags.
"""

from __future__ import annotations

from semcom.errors import WireFormatError

MAGIC = b"SCM"


def stream_version(data: bytes) -> int:
    """The version byte of a semcom stream (1: the memory link over sphere64, 2: the codec link, 3: the codebook
    scheme, 4: the memory link over the codebook's tokens)."""
    if len(data) < 4 or data[:3] != MAGIC:
        raise WireFormatError("not a semcom stream (bad magic bytes)")
    return data[3]


def code_clip(tx, frames, max_frames: int):
    """Send a clip (T, H, W, 3) uint8 through transmitter ``tx`` frame by frame (``tx.send``), then
    ``tx.finish()``: the stream file and ``tx`` (its records). At most ``max_frames`` frames (a stream's
    limit); the codec and token links' ``encode_clip``."""
    from semcom.errors import ConfigError

    if not 1 <= len(frames) <= max_frames:
        raise ConfigError(f"invalid frames={len(frames)}: must be 1..{max_frames}")
    for frame in frames:
        tx.send(frame)
    return tx.finish(), tx
