"""``semcom decode``: the receiver, stream file -> video or PNG frames."""

from __future__ import annotations

from pathlib import Path

from semcom.commands import HELP
from semcom.commands._common import add_device_arg, add_threads_arg, device_main, out_console, print_json
from semcom.errors import ConfigError, SourceError, WireFormatError


def add_parser(sub) -> None:
    p = sub.add_parser("decode", help=HELP["decode"])
    p.add_argument("stream", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="a video file (.mp4, .mkv, .avi) or a folder for PNG frames")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--fps", type=int, default=12)
    add_threads_arg(p)
    add_device_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(main=device_main(main))


def main(args) -> int:
    from semcom.threads import frame_work

    with frame_work():  # the receiver's loop is per frame: semcom.threads
        return _main(args)


def _main(args) -> int:
    import torch

    from semcom.link import Receiver
    from semcom.link.wire import HEADER_SIZE
    from semcom.models import fingerprint, load_autoencoder
    from semcom.threads import batch_work

    if not args.stream.is_file():
        raise SourceError(f"stream file not found: {args.stream}")
    _check_output(args.output)
    data = args.stream.read_bytes()
    from semcom.schemes import stream_version

    if stream_version(data) == 2:
        return _decode_codec(args, data)
    if stream_version(data) in (3, 4):
        return _decode_codebook(args, data)
    model = load_autoencoder(args.weights)
    try:
        rx, header = Receiver.from_header(data[:HEADER_SIZE], model.decoder, fingerprint(model))
    except WireFormatError as exc:
        raise WireFormatError(f"{args.stream}: {exc}") from None
    lost = 0
    try:
        if header.session:   # a link with faults: replay what its receiver got
            from semcom.experiments.semantic_link import hold_last, shown_frames
            from semcom.link.transcript import replay

            latents, prx = replay(data, model.decoder, fingerprint(model))
            rx, lost = prx.rx, sum(z is None for z in latents)
            frames = shown_frames(hold_last(latents), rx, header.config.d)
        else:
            latents = torch.stack(list(rx.iter_stream(data, header.frames, HEADER_SIZE)))
            with batch_work(len(latents), header.config.height, header.config.width):  # one batch
                frames = rx.decode(latents)
    except WireFormatError as exc:
        raise WireFormatError(f"{args.stream}: {exc}") from None
    _write(args, frames)
    summary = {"stream": str(args.stream), "output": str(args.output), "frames": len(frames),
               "bytes": len(data), "bits_per_frame_wire": 8 * len(data) / len(frames), "rule": header.config.rule,
               "memory_size": rx.memory.size, "memory_digest": rx.memory.digest(), "session": header.session,
               "frames_lost": lost}
    if args.json:
        print_json(summary)
    else:
        out_console.print(f"decoded {len(frames)} frames ({len(data)} bytes, "
                          f"{summary['bits_per_frame_wire']:.2f} bits/frame) -> {args.output}")
    return 0


def _check_output(output: Path) -> None:
    """Before decoding: a video file of a known extension, or a folder (no extension, or one that exists)."""
    from semcom.sources import VIDEO_EXTENSIONS

    suffix = output.suffix.lower()
    if suffix and suffix not in VIDEO_EXTENSIONS and not output.is_dir():
        raise ConfigError(f"-o/--output {output}: unknown extension {output.suffix!r}; give a video file "
                          f"({', '.join(VIDEO_EXTENSIONS)}) or a folder name without an extension")


def _write(args, frames) -> None:
    from semcom.sources import VIDEO_EXTENSIONS, write_folder, write_video

    if args.output.suffix.lower() in VIDEO_EXTENSIONS:
        write_video(args.output, frames, fps=args.fps)
    else:
        write_folder(args.output, frames)


def _decode_codec(args, data: bytes) -> int:
    """A codec-link stream (version 2): the header names the model and quality; no flags needed."""
    from semcom.models.zoo import load_model
    from semcom.schemes.codec_link import CodecHeader, decode_stream

    header = CodecHeader.from_bytes(data)
    model = load_model(header.config.model, args.weights)
    try:
        frames, rx = decode_stream(data, model)
    except WireFormatError as exc:
        raise WireFormatError(f"{args.stream}: {exc}") from None
    _write(args, frames)
    summary = {"stream": str(args.stream), "output": str(args.output), "frames": len(frames), "bytes": len(data),
               "bits_per_frame_wire": 8 * len(data) / len(frames), "model": header.config.model,
               "quality": header.config.quality, "memory_size": rx.memory.size,
               "memory_digest": rx.memory.digest(), "session": False, "frames_lost": 0}
    if args.json:
        print_json(summary)
    else:
        out_console.print(f"decoded {len(frames)} frames of {header.config.model} q{header.config.quality} "
                          f"({len(data)} bytes, {summary['bits_per_frame_wire']:.2f} bits/frame) -> {args.output}")
    return 0


def _decode_codebook(args, data: bytes) -> int:
    """A codebook stream (version 3) or the memory link over its tokens (version 4): the header names the
    variant and its weights; no flags needed."""
    from semcom.schemes import stream_version
    from semcom.schemes.codebook import CodebookReceiver, load_variant, parse_header
    from semcom.schemes.token_link import TokenHeader, decode_stream

    try:
        if stream_version(data) == 3:
            header = parse_header(data)
            frames = CodebookReceiver(load_variant(header.variant, args.weights)).decode(data)
            scheme, variant, J = "codebook", header.variant, header.J
        else:
            header = TokenHeader.from_bytes(data)
            frames, _ = decode_stream(data, load_variant(header.config.variant, args.weights))
            scheme, variant, J = "codebook-memory", header.config.variant, header.J
    except WireFormatError as exc:
        raise WireFormatError(f"{args.stream}: {exc}") from None
    _write(args, frames)
    summary = {"stream": str(args.stream), "output": str(args.output), "frames": len(frames), "bytes": len(data),
               "bits_per_frame_wire": 8 * len(data) / len(frames), "scheme": scheme, "variant": variant,
               "J": J, "session": False, "frames_lost": 0}
    if args.json:
        print_json(summary)
    else:
        out_console.print(f"decoded {len(frames)} frames of {scheme} {variant} J={J} "
                          f"({len(data)} bytes, {summary['bits_per_frame_wire']:.2f} bits/frame) -> {args.output}")
    return 0
