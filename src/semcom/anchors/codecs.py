"""Classical codecs as anchors: JPEG and WebP per frame (Pillow), H.264, HEVC and AV1 (PyAV).

Every codec turns a clip of uint8 RGB frames ``(T, H, W, 3)`` into real bytes and
decodes those bytes back; ``EncodedClip.bits_total`` is ``8 * len(bytes)`` of what a
receiver would need, and ``EncodedClip.decoded`` is what the decoder made of exactly
those bytes. The rules of the count:

* **Pillow codecs** (``jpeg``, ``webp``): each frame is a complete image file (JPEG
  with its JFIF/quantisation/Huffman headers, WebP with its RIFF header); the bits are
  the sum of the file sizes, and each frame is decoded by Pillow from its file.
  ``param["header_bytes"]`` is how much of that total is headers rather than
  entropy-coded data (at 64 x 64 and low quality, most of it).
* **Video codecs** (``h264``, ``hevc``, ``av1``): the encoder's packets, concatenated,
  form the elementary stream (Annex-B H.264/HEVC with in-band parameter sets, AV1
  low-overhead OBUs with the sequence header in the first temporal unit): the same
  bytes as a raw ``.264``/``.hevc``/``.obu`` file, self-delimiting, decodable on their
  own. ``bits_total`` is 8 x its length, and the frames are decoded from it with a
  parser and a decoder (FFmpeg's H.264/HEVC decoders, dav1d for AV1). The clip is
  also remuxed into Matroska to report ``param["container_bytes"]``, what a ``.mkv``
  file of the same stream weighs (not counted in the bits).

x264 writes a ~650-byte SEI message with its version and option string into the
first access unit (``user_data_unregistered``): decoders ignore it, so it is stripped
before counting (``param["sei_bytes_stripped"]``) and the stripped stream is what is
decoded. x265's equivalent is turned off with ``info=0``.

Video codecs encode ``yuv420p`` converted by swscale (BT.601, limited range) and are
decoded back to RGB the same way, so their PSNR is capped by that round trip even at
the best quality. Frames with odd sizes (or smaller than x265's 16 x 16) are padded by
edge replication and cropped after decoding; the padding is paid for in bits.
Encoders run single-threaded, so the same clip and parameter give the same bytes.

libx265 (4.1, as bundled with PyAV's wheels) misbehaves on tiny frames at its default
64 x 64 CTU: at 64 x 64 its output varies from run to run (valgrind: uninitialised
reads in the coefficient coder), and at a width of 48 its lookahead cuTree writes
past a heap buffer and aborts the process. The ``hevc`` anchor therefore uses
``ctu=32`` when both (padded) sides are >= 64 px (deterministic, and no more bits
than the default at 64 x 64), and ``ctu=16:cutree=0`` below that (deterministic and
crash-free down to 24 x 24, its minimum size here, at up to ~20 % more bits).
"""

from __future__ import annotations

import io
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from semcom.errors import ConfigError, SemcomError, SourceError


class CodecError(SemcomError):
    """A codec failed or decoded a different number of frames than it was given."""


@dataclass(frozen=True)
class EncodedClip:
    """A clip through a codec: the real bits, the decoded frames, and the settings used.

    ``bits_total`` is 8 x the length of the bytes a receiver needs; ``decoded`` is
    (T, H, W, 3) uint8 decoded from those bytes; ``param`` holds the codec settings
    and side measurements (header or container bytes); ``data`` is the bytes
    themselves: one image file per frame, or one elementary stream.
    """

    bits_total: int
    decoded: np.ndarray
    param: dict[str, Any] = field(default_factory=dict)
    data: tuple[bytes, ...] = ()

    @property
    def frames(self) -> int:
        return int(self.decoded.shape[0])

    @property
    def bits_per_frame(self) -> float:
        return self.bits_total / self.frames


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate a clip: (T, H, W, 3) uint8 with T >= 1."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise SourceError(f"expected frames of shape (T, H, W, 3) with T >= 1, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise SourceError(f"expected uint8 frames, got {arr.dtype}")
    return np.ascontiguousarray(arr)


class Codec(ABC):
    """A codec with one fidelity knob.

    ``param_name`` names the knob (``quality`` or ``crf``), ``param_range`` its legal
    ``(lo, hi)``, ``higher_is_better`` whether raising it raises fidelity (False for
    CRF), and ``integer`` whether it only takes integer values.
    """

    name: str
    param_name: str
    param_range: tuple[float, float]
    higher_is_better: bool
    integer: bool

    @abstractmethod
    def is_available(self) -> bool:
        """Whether this codec can run in this installation."""

    @abstractmethod
    def _encode(self, frames: np.ndarray, quality: float) -> EncodedClip: ...

    def encode(self, frames: np.ndarray, quality: float) -> EncodedClip:
        """Encode ``frames`` at ``quality`` (the codec's knob, e.g. JPEG quality or CRF) and decode back."""
        frames = check_frames(frames)
        quality = self.check_param(quality)
        clip = self._encode(frames, quality)
        if clip.decoded.shape != frames.shape or clip.decoded.dtype != np.uint8:
            raise CodecError(f"{self.name}: decoded {clip.decoded.shape} {clip.decoded.dtype}, "
                             f"expected {frames.shape} uint8")
        if clip.bits_total != 8 * sum(len(d) for d in clip.data):
            raise CodecError(f"{self.name}: bits_total {clip.bits_total} is not 8 x the bytes produced")
        return clip

    def check_param(self, quality: float) -> float | int:
        lo, hi = self.param_range
        try:
            q = float(quality)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name} {self.param_name} must be a number, got {quality!r}") from None
        if not lo <= q <= hi:
            raise ConfigError(f"{self.name} {self.param_name} must be in [{lo:g}, {hi:g}], got {quality!r}")
        if self.integer:
            if q != int(q):
                raise ConfigError(f"{self.name} {self.param_name} must be an integer, got {quality!r}")
            return int(q)
        return q

    @property
    def worst(self) -> float:
        """The knob value of lowest fidelity (fewest bits)."""
        return self.param_range[0] if self.higher_is_better else self.param_range[1]

    @property
    def best(self) -> float:
        """The knob value of highest fidelity."""
        return self.param_range[1] if self.higher_is_better else self.param_range[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {self.param_name} in {self.param_range}>"


# --------------------------------------------------------------------------------------------
# Per-frame image codecs (Pillow)


def _jpeg_header_bytes(data: bytes) -> int:
    """Bytes of a baseline JPEG that are not entropy-coded scan data: everything up to the end
    of the SOS segment, plus the 2-byte EOI."""
    pos = data.find(b"\xff\xda")
    if pos < 0:
        return len(data)
    sos_len = int.from_bytes(data[pos + 2:pos + 4], "big")
    return pos + 2 + sos_len + 2


def _webp_header_bytes(data: bytes) -> int:
    """Bytes of a lossy WebP that are not VP8 partition data: the RIFF/chunk headers and the
    10-byte VP8 key-frame header."""
    pos = data.find(b"VP8 ")
    if pos < 0:
        return len(data)
    chunk = int.from_bytes(data[pos + 4:pos + 8], "little")
    return len(data) - chunk + 10


class PillowCodec(Codec):
    """An image codec applied frame by frame; bits are the sum of the image files' sizes."""

    def __init__(self, name: str, fmt: str, param_range: tuple[float, float], integer: bool,
                 save_options: dict[str, Any], header_bytes):
        self.name = name
        self.fmt = fmt
        self.param_name = "quality"
        self.param_range = param_range
        self.higher_is_better = True
        self.integer = integer
        self.save_options = dict(save_options)
        self._header_bytes = header_bytes

    def is_available(self) -> bool:
        from PIL import features

        return bool(features.check({"JPEG": "jpg", "WEBP": "webp"}[self.fmt]))

    def encode_frame(self, frame: np.ndarray, quality: float) -> bytes:
        """One frame's complete image file."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format=self.fmt, quality=quality, **self.save_options)
        return buf.getvalue()

    def _encode(self, frames: np.ndarray, quality: float) -> EncodedClip:
        from PIL import Image

        files = []
        decoded = np.empty_like(frames)
        for i, frame in enumerate(frames):
            data = self.encode_frame(frame, quality)
            files.append(data)
            with Image.open(io.BytesIO(data)) as im:
                decoded[i] = np.asarray(im.convert("RGB"))
        total = sum(len(d) for d in files)
        param = {"quality": quality, **self.save_options, "bytes": total,
                 "header_bytes": sum(self._header_bytes(d) for d in files)}
        return EncodedClip(bits_total=8 * total, decoded=decoded, param=param, data=tuple(files))


# --------------------------------------------------------------------------------------------
# Video codecs (PyAV)

_START_CODE = re.compile(b"\x00\x00\x01")


def strip_h264_user_data_sei(stream: bytes) -> tuple[bytes, int]:
    """Remove SEI NAL units whose first message is ``user_data_unregistered`` (payload type 5) from
    an Annex-B H.264 stream, as x264 writes its version string there. Returns (stream, bytes removed)."""
    starts = [m.start() for m in _START_CODE.finditer(stream)]
    if not starts:
        return stream, 0
    # a NAL unit's bytes begin at its start code, including a 4-byte start code's leading zero
    begins = [s - 1 if s > 0 and stream[s - 1] == 0 else s for s in starts]
    out = [stream[:begins[0]]]
    removed = 0
    for i, (b, s) in enumerate(zip(begins, starts)):
        end = begins[i + 1] if i + 1 < len(begins) else len(stream)
        nal = stream[b:end]
        h = s + 3
        if h + 1 < len(stream) and (stream[h] & 0x1F) == 6 and stream[h + 1] == 5:
            removed += len(nal)
            continue
        out.append(nal)
    return b"".join(out), removed


class PyAVCodec(Codec):
    """A video codec through PyAV: encode yuv420p, flush, count the elementary stream, decode it back."""

    def __init__(self, name: str, encoder: str, decoder: str, demuxer: str, param_range: tuple[float, float],
                 integer: bool, options: dict[str, str], min_size: int = 2, strip_sei: bool = False,
                 env: dict[str, str] | None = None, fps: int = 25):
        self.name = name
        self.encoder = encoder
        self.decoder = decoder
        self.demuxer = demuxer
        self.param_name = "crf"
        self.param_range = param_range
        self.higher_is_better = False
        self.integer = integer
        self.options = dict(options)
        self.min_size = min_size
        self.strip_sei = strip_sei
        self.env = dict(env or {})
        self.fps = fps

    def is_available(self) -> bool:
        try:
            import av
        except ImportError:
            return False
        return self.encoder in av.codecs_available and self.decoder in av.codecs_available

    def _padded_size(self, h: int, w: int) -> tuple[int, int]:
        def up(n: int) -> int:
            n = max(n, self.min_size)
            return n + (n % 2)

        return up(h), up(w)

    def options_for_size(self, height: int, width: int) -> dict[str, str]:
        """Encoder options for frames of this (padded) size."""
        return dict(self.options)

    def encode_stream(self, frames: np.ndarray, crf: float) -> tuple[bytes, list, dict[str, Any]]:
        """The elementary stream (bytes), the encoder's packets and the settings, for ``frames`` at ``crf``."""
        import av

        for k, v in self.env.items():  # e.g. SVT_LOG: SVT-AV1 prints to stderr unless told otherwise
            os.environ.setdefault(k, v)
        t, h, w, _ = frames.shape
        ph, pw = self._padded_size(h, w)
        if (ph, pw) != (h, w):
            frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        ctx = av.CodecContext.create(self.encoder, "w")
        ctx.width, ctx.height = pw, ph
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, self.fps)
        ctx.framerate = Fraction(self.fps, 1)
        crf_text = f"{crf:d}" if isinstance(crf, int) else f"{crf:.4f}".rstrip("0").rstrip(".")
        options = {**self.options_for_size(ph, pw), "crf": crf_text}
        ctx.options = options
        packets = []
        try:
            for i, frame in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
                vf.pts = i
                packets.extend(ctx.encode(vf))
            packets.extend(ctx.encode(None))  # flush: B-frames and lookahead
        except av.FFmpegError as exc:
            raise CodecError(f"{self.name} ({self.encoder}) failed to encode: {exc}") from None
        stream = b"".join(bytes(p) for p in packets)
        settings = {k: v for k, v in options.items() if k != "crf"}
        param: dict[str, Any] = {"crf": crf, "encoder": self.encoder, **settings, "pix_fmt": "yuv420p",
                                 "size": [pw, ph], "packets": len(packets)}
        if self.strip_sei:
            stream, removed = strip_h264_user_data_sei(stream)
            param["sei_bytes_stripped"] = removed
        param["bytes"] = len(stream)
        return stream, packets, param

    def decode_stream(self, stream: bytes) -> list[np.ndarray]:
        """Decode an elementary stream to RGB frames, from its bytes alone."""
        import av

        dec = av.CodecContext.create(self.decoder, "r")
        out = []
        try:
            for chunk in (stream, None):  # None flushes the parser
                for packet in dec.parse(chunk):
                    out.extend(dec.decode(packet))
            out.extend(dec.decode(None))
        except av.FFmpegError as exc:
            raise CodecError(f"{self.name} ({self.decoder}) failed to decode its own stream: {exc}") from None
        return [f.to_ndarray(format="rgb24") for f in out]

    def container_bytes(self, stream: bytes, packets: list, fmt: str = "matroska") -> int | None:
        """Size of the stream remuxed into a container file (Matroska by default); None if it cannot be."""
        import av

        try:
            with av.open(io.BytesIO(stream), format=self.demuxer) as inp:
                ist = inp.streams.video[0]
                buf = io.BytesIO()
                with av.open(buf, "w", format=fmt) as out:
                    ost = out.add_stream_from_template(ist, opaque=True)
                    demuxed = [p for p in inp.demux(ist) if p.size]
                    if len(demuxed) != len(packets):
                        return None
                    for p, e in zip(demuxed, packets):
                        p.pts, p.dts, p.time_base = e.pts, e.dts, e.time_base
                        p.stream = ost
                        out.mux(p)
                return len(buf.getvalue())
        except (av.FFmpegError, ValueError, IndexError):
            return None

    def _encode(self, frames: np.ndarray, quality: float) -> EncodedClip:
        t, h, w, _ = frames.shape
        stream, packets, param = self.encode_stream(frames, quality)
        decoded = self.decode_stream(stream)
        if len(decoded) != t:
            raise CodecError(f"{self.name}: decoded {len(decoded)} frames from a stream of {t}")
        param["container_bytes"] = self.container_bytes(stream, packets)
        return EncodedClip(bits_total=8 * len(stream), decoded=np.stack(decoded)[:, :h, :w], param=param,
                           data=(stream,))


class X265Codec(PyAVCodec):
    """libx265 with the CTU size chosen to dodge its small-frame bugs (see the module docstring)."""

    def options_for_size(self, height: int, width: int) -> dict[str, str]:
        options = dict(self.options)
        ctu = "ctu=32" if min(height, width) >= 64 else "ctu=16:cutree=0"
        params = options.get("x265-params", "")
        options["x265-params"] = f"{params}:{ctu}" if params else ctu
        return options


# --------------------------------------------------------------------------------------------
# The registry

ALL_CODECS: dict[str, Codec] = {
    "jpeg": PillowCodec("jpeg", "JPEG", (1, 95), integer=True, save_options={"optimize": True},
                        header_bytes=_jpeg_header_bytes),
    "webp": PillowCodec("webp", "WEBP", (0.0, 100.0), integer=False,
                        save_options={"method": 6, "lossless": False}, header_bytes=_webp_header_bytes),
    "h264": PyAVCodec("h264", "libx264", "h264", "h264", (0.0, 51.0), integer=False,
                      options={"preset": "medium", "threads": "1"}, strip_sei=True),
    "hevc": X265Codec("hevc", "libx265", "hevc", "hevc", (0.0, 51.0), integer=False,
                      options={"preset": "medium",
                               "x265-params": "log-level=error:info=0:pools=none:frame-threads=1"},
                      min_size=24),
    "av1": PyAVCodec("av1", "libsvtav1", "libdav1d", "obu", (1, 63), integer=True,
                     options={"preset": "8", "svtav1-params": "lp=1"}, env={"SVT_LOG": "1"}),
}

#: The codecs available in this installation, by name.
CODECS: dict[str, Codec] = {k: c for k, c in ALL_CODECS.items() if c.is_available()}


def get_codec(name: str | Codec) -> Codec:
    """A codec by registry name (or the codec itself); a clear error for unknown or unavailable ones."""
    if isinstance(name, Codec):
        return name
    if name in CODECS:
        return CODECS[name]
    if name in ALL_CODECS:
        raise ConfigError(f"codec {name!r} is not available in this installation "
                          f"(available: {', '.join(CODECS) or 'none'})")
    raise ConfigError(f"unknown codec {name!r}; choose from {', '.join(ALL_CODECS)}")
