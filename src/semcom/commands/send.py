"""``semcom send``: the live transmitter, SOURCE -> a ``semcom serve`` over TCP or UDP (docs/live.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from semcom.commands import HELP
from semcom.commands._common import (
    add_codec_switches,
    add_link_args,
    add_threads_arg,
    check_no_sphere_flags,
    codec_config,
    link_config,
    model_kind,
    out_console,
    print_json,
    reject_codec_switches,
)
from semcom.commands.serve import add_key_args, parse_address, positive_float
from semcom.errors import ConfigError

#: Rows of the human table.
_ROWS = ("session", "transport", "frames", "bytes", "bits_per_frame_wire", "payload_bits_per_frame",
         "feedback_bits_per_frame", "hit_rate", "lost_frames", "refreshes", "retransmissions", "memory_size",
         "psnr_db", "fps", "latency_ms")


def add_parser(sub) -> None:
    p = sub.add_parser("send", help=HELP["send"])
    p.add_argument("source", help="a regime name, a video file or a folder of images")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="the server's address")
    p.add_argument("--transport", default="tcp", choices=["tcp", "udp"])
    p.add_argument("--scheme", default="memory", choices=("memory", "codebook", "codebook-memory"),
                   help="memory: the memory link over -m MODEL (default); codebook: the codebook paper's index labels; "
                   "codebook-memory: the memory link over "
                   "the codebook paper's token grid (--variant; --tau default 1, --m-max, --full-policy)")
    p.add_argument("--variant", default=None,
                   help="--scheme codebook(-memory): vqvae, vqvae+entropy, vqvae+channel or proposed (default)")
    add_link_args(p, multi_rule=False)
    g = p.add_argument_group("the sphere64 link's protected packets (semcom.link.session)")
    g.add_argument("--cue-bits", type=int, default=0, help="SimHash cue bits with every hit (the paper: 32)")
    g.add_argument("--sync-every", type=int, default=16, help="a memory check every N frames (0: never)")
    g.add_argument("--checksum-bits", type=int, default=16, choices=[16, 32], help="CRC of short packets")
    g.add_argument("--max-attempts", type=int, default=4, help="damaged packets a frame may suffer before a drop")
    add_key_args(p)
    add_codec_switches(p, bframes=False)  # the live link codes each frame as it comes
    p.add_argument("--fps", type=positive_float, default=None, help="send at this frame rate, like a camera")
    p.add_argument("--timeout", type=positive_float, default=5.0,
                   help="seconds without an answer before the server counts as unreachable (default 5)")
    p.add_argument("--state", type=Path, default=None,
                   help="session state file: resume the session it names if it exists; written at the end")
    p.add_argument("--record", type=Path, default=None,
                   help="write the frames the receiver shows, as this end computes them, to this folder (PNG)")
    add_threads_arg(p)
    p.set_defaults(main=main)


#: Flags of the sphere64 link's protected packets, with their defaults.
_PROTECTION = {"cue_bits": 0, "sync_every": 16, "checksum_bits": 16, "max_attempts": 4}


def sender_for(args):
    """The scheme's sender from the command line, and the frame size it takes."""
    from semcom.config import ProtectionConfig, validated
    from semcom.live.schemes import SphereSender, codec_sender

    if args.scheme in ("codebook", "codebook-memory"):
        reject_codec_switches(args, f"--scheme {args.scheme}")
        return _token_sender(args)
    if args.variant is not None:
        raise ConfigError("--variant applies to --scheme codebook or codebook-memory")
    if model_kind(args) == "spatial":
        from semcom.models.zoo import load_model

        check_no_sphere_flags(args, _PROTECTION)
        model = load_model(args.model, args.weights)
        cfg = codec_config(args, model.hparams["height"], model.hparams["width"])
        return codec_sender(model, cfg), cfg.height, cfg.width
    from semcom.models import load_autoencoder

    reject_codec_switches(args, "-m sphere64")
    if args.coding != "fixed":
        raise ConfigError("--coding adaptive: the live link sends protected packets, which use fixed-length coding")
    model = load_autoencoder(args.weights)
    link = link_config(args, args.rule, model)
    protection = validated(ProtectionConfig, cue_bits=args.cue_bits, sync_every=args.sync_every,
                           checksum_bits=args.checksum_bits, max_attempts=args.max_attempts)
    return SphereSender(model, link, protection), link.height, link.width


def _token_sender(args):
    """The codebook paper's scheme: index labels alone (--scheme codebook, semcom.schemes.codebook), or the memory
    link over its token grid (--scheme codebook-memory, semcom.schemes.token_link)."""
    from semcom.config import validated
    from semcom.live.schemes import LabelSender, token_sender
    from semcom.models.zoo import DEFAULT_MODEL
    from semcom.schemes.codebook import load_variant
    from semcom.schemes.token_link import TokenLinkConfig

    if args.model != DEFAULT_MODEL or args.quality is not None:
        raise ConfigError(f"-m/--model and -q/--quality apply to --scheme memory, not to --scheme {args.scheme}")
    check_no_sphere_flags(args, _PROTECTION)
    model = load_variant(args.variant or "proposed", args.weights)
    hp = model.hparams
    if args.scheme == "codebook":
        if args.tau is not None or args.m_max != 256 or args.full_policy != "lru":
            raise ConfigError("--tau, --m-max and --full-policy apply to --scheme codebook-memory, not to codebook")
        return LabelSender(model), hp["height"], hp["width"]
    cfg = validated(TokenLinkConfig, variant=hp["variant"], tau=1.0 if args.tau is None else args.tau,
                    m_max=args.m_max, full_policy=args.full_policy, height=hp["height"], width=hp["width"])
    return token_sender(model, cfg), cfg.height, cfg.width


def main(args) -> int:
    from semcom.live.client import SendConfig, send_frames
    from semcom.live.framing import read_key_file
    from semcom.live.state import load_state
    from semcom.metrics import psnr
    from semcom.sources import open_source

    host, port = parse_address(args.to, "--to")
    if args.encrypt and args.key_file is None:
        raise ConfigError("--encrypt needs --key-file")
    key = read_key_file(args.key_file) if args.key_file is not None else None
    sender, height, width = sender_for(args)
    state = None
    if args.state is not None and args.state.exists():
        state = load_state(args.state)
        if state.header != sender.header(0):
            raise ConfigError(f"state file {args.state} was written for another link configuration "
                              "(model, quality, tau, m_max ...)")
    source = open_source(args.source, height=height, width=width, frames=args.frames, seed=args.seed)
    config = SendConfig(host, port, args.transport, key, args.encrypt, args.timeout)
    from semcom.threads import frame_work

    with frame_work():  # per-frame work: one thread is faster on small frames and leaves a core to the server
        record = _recorder(args.record, sender) if args.record is not None else None
        result = asyncio.run(_until_stopped(send_frames(config, sender, source.frames, state=state,
                                                        state_path=args.state, fps=args.fps, on_frame=record)))
    pairs = [(src, s.frame) for src, s in zip(source.frames, result.shown) if s.frame is not None]
    summary = dict(result.summary)
    summary["psnr_db"] = psnr(np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])) if pairs else None
    summary["source"], summary["resumed"] = source.name, state is not None
    summary["server"] = result.server
    if args.json:
        print_json(summary)
    else:
        from rich.table import Table

        table = Table(title=f"sent {source.name} -> {args.to} ({args.transport})", title_justify="left")
        for k in _ROWS:
            v = summary.get(k)
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        out_console.print(table)
    return 0


async def _until_stopped(coro):
    """Run ``coro``; SIGTERM, like Ctrl-C, cancels it (so the state file is still written) and ends the command
    as an interruption."""
    import signal

    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError):
        pass
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def _recorder(folder: Path, sender):
    """The transmitter's record of what the receiver shows, written as it happens: ``frame_<t>.png`` per decoded
    frame (a dropped frame has none)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)

    def record(shown) -> None:
        if shown.frame is not None:
            Image.fromarray(shown.frame).save(folder / f"frame_{sender.t - 1:06d}.png")

    return record
