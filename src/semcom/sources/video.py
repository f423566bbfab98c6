"""Reading and writing video files with PyAV (FFmpeg).

:func:`read_video` decodes the first video stream of a file, converts each frame
to RGB and centre-crops/resizes it to the model's frame size with
:func:`semcom.sources.resize.fit_frame`. :func:`write_video` encodes uint8 RGB
frames, choosing the codec from the file extension.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np

from semcom.errors import SourceError
from semcom.sources.resize import check_max_frames, check_size, fit_frame

#: File extensions treated as video files, and the encoder :func:`write_video` uses for each.
VIDEO_EXTENSIONS: dict[str, str] = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mkv": "libx264",
    ".mov": "libx264",
    ".avi": "mpeg4",
    ".webm": "libvpx-vp9",
}


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.FFmpegError, OSError, ValueError, EOFError)


def _open_input(path: str):
    import av

    if not os.path.exists(path):
        raise SourceError(f"video file not found: {path}")
    if os.path.isdir(path):
        raise SourceError(f"expected a video file, got a folder: {path}")
    try:
        container = av.open(path, mode="r")
    except _av_errors() as exc:
        raise SourceError(f"not a readable video file: {path} ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"no video stream in file: {path}")
    return container


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_video(path: str | os.PathLike, height: int = 64, width: int = 64,
               max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of the video file ``path`` as ``height x width x 3`` uint8 RGB arrays.

    Each decoded frame is centre-cropped to the aspect ratio ``width / height`` and
    resized (Pillow LANCZOS). At most ``max_frames`` frames are yielded. The file is
    opened and checked before this function returns, so a missing file, a file that
    is not a readable video, or a file without a video stream raises
    :class:`SourceError` immediately; a decoding error part-way raises it while iterating.
    """
    height, width = check_size(height, width)
    max_frames = check_max_frames(max_frames)
    path = os.fspath(path)
    container = _open_input(path)
    return _frames(container, path, height, width, max_frames)


def _frames(container, path: str, height: int, width: int, max_frames: int | None) -> Iterator[np.ndarray]:
    count = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                img = frame.to_ndarray(format="rgb24")
                yield fit_frame(img, height, width)
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except _av_errors() as exc:
            raise SourceError(f"cannot decode video file: {path} after {count} frames ({_reason(exc)})") from None
    finally:
        container.close()


def _codec_for(path: str, codec: str | None) -> str:
    import av

    ext = os.path.splitext(path)[1].lower()
    if codec is None:
        if ext not in VIDEO_EXTENSIONS:
            raise SourceError(f"cannot choose a video codec for {path}: use one of "
                              f"{', '.join(VIDEO_EXTENSIONS)} or pass codec=")
        codec = VIDEO_EXTENSIONS[ext]
    if codec not in av.codecs_available:
        raise SourceError(f"video codec {codec!r} is not available in this FFmpeg build (writing {path})")
    return codec


def _as_frame(frame: object, path: str, index: int) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise SourceError(f"frame {index} for {path} must be an HxWx3 uint8 array, "
                          f"got shape {arr.shape} dtype {arr.dtype}")
    return arr


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 12,
                codec: str | None = None) -> int:
    """Encode ``frames`` (HxWx3 uint8 RGB, all the same size) to the video file ``path``.

    The codec follows the extension unless ``codec`` is given: ``.mp4``, ``.m4v``,
    ``.mkv``, ``.mov`` -> H.264 (libx264, yuv420p, CRF 18); ``.avi`` -> MPEG-4 part 2
    at a high bit rate; ``.webm`` -> VP9 (libvpx-vp9, CRF 18) where the FFmpeg build has
    it. Subsampled chroma needs even sizes, so odd heights/widths are padded by
    repeating the last row/column. Returns the number of frames written; raises
    :class:`SourceError` if there are none, if frames are malformed or differ in size,
    or if the file cannot be written.
    """
    import av

    path = os.fspath(path)
    codec = _codec_for(path, codec)
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError):
        raise SourceError(f"fps must be a positive number, got {fps!r} (writing {path})") from None
    if rate <= 0:
        raise SourceError(f"fps must be a positive number, got {fps!r} (writing {path})")
    it = iter(frames)
    try:
        first = _as_frame(next(it), path, 0)
    except StopIteration:
        raise SourceError(f"no frames to write to video file: {path}") from None
    h, w = first.shape[:2]
    ph, pw = h + h % 2, w + w % 2
    try:
        container = av.open(path, mode="w")
    except _av_errors() as exc:
        raise SourceError(f"cannot write video file: {path} ({_reason(exc)})") from None
    count = 0
    try:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = pw, ph
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "18", "b": "0", "deadline": "good", "cpu-used": "4"}
        else:
            stream.bit_rate = max(2_000_000, int(pw * ph * float(rate) * 4))
        arr = first
        while True:
            if arr.shape[:2] != (h, w):
                raise SourceError(f"frame {count} for {path} is {arr.shape[0]}x{arr.shape[1]}, "
                                  f"expected {h}x{w} like frame 0")
            if (ph, pw) != (h, w):
                arr = np.pad(arr, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
            count += 1
            try:
                arr = _as_frame(next(it), path, count)
            except StopIteration:
                break
        for packet in stream.encode():
            container.mux(packet)
    except _av_errors() as exc:
        raise SourceError(f"cannot write video file: {path} ({_reason(exc)})") from None
    finally:
        container.close()
    return count
