"""``semcom encode``: the transmitter, SOURCE -> stream file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semcom.commands import HELP
from semcom.commands._common import (
    add_codec_switches,
    add_device_arg,
    add_fault_args,
    add_link_args,
    add_threads_arg,
    check_no_sphere_flags,
    codec_config,
    device_main,
    fault_configs,
    link_config,
    model_kind,
    out_console,
    print_json,
    progress,
    reject_codec_switches,
)
from semcom.errors import ConfigError, SemcomError


def add_parser(sub) -> None:
    p = sub.add_parser("encode", help=HELP["encode"])
    p.add_argument("source", help="a regime name, a video file or a folder of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="stream file to write")
    p.add_argument("--scheme", default="memory", choices=("memory", "codebook", "codebook-memory"),
                   help="memory: the memory link over -m MODEL (default); codebook: the grounded codebook "
                   "paper's VQ-VAE, index labels only (--variant); codebook-memory: the memory link over its "
                   "token grid (--tau, default 1: lossless against codebook; --m-max, --full-policy)")
    p.add_argument("--variant", default=None, help="--scheme codebook: vqvae, vqvae+entropy, vqvae+channel or "
                   "proposed (default proposed)")
    add_link_args(p, multi_rule=False)
    p.add_argument("--max-attempts", type=int, default=4, help="with faults: damaged packets a frame may suffer")
    p.add_argument("--no-memory", action="store_true",
                   help="spatial models: every frame intra and nothing stored (the codec alone, for comparison)")
    add_codec_switches(p)
    p.add_argument("--allow-loss", action="store_true",
                   help="with faults: write the session even if the link lost more than half of the frames")
    add_fault_args(p)
    add_threads_arg(p)
    add_device_arg(p)
    p.set_defaults(main=device_main(main))


def main(args) -> int:
    from semcom.threads import frame_work

    with frame_work():  # the transmitter's loop is per frame: semcom.threads
        return _main(args)


def _main(args) -> int:
    import torch

    from semcom.frames import to_uint8
    from semcom.link import Transmitter
    from semcom.link.wire import pack_stream
    from semcom.metrics import psnr, ssim
    from semcom.models import fingerprint, load_autoencoder
    from semcom.sources import open_source
    from semcom.threads import batch_work

    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"invalid frames={args.frames}: must be positive")
    if args.scheme in ("codebook", "codebook-memory"):
        return _encode_codebook(args)
    if args.variant is not None:
        raise ConfigError("--variant applies to --scheme codebook")
    if model_kind(args) == "spatial":
        return _encode_codec(args)
    if args.no_memory:
        raise ConfigError("--no-memory applies to a spatial model (-m hyperprior), not to -m sphere64")
    reject_codec_switches(args, "-m sphere64")
    protection, faults = fault_configs(args)
    model = load_autoencoder(args.weights)
    link = link_config(args, args.rule, model)
    source = open_source(args.source, height=link.height, width=link.width, frames=args.frames, seed=args.seed)
    frames = source.frames
    if protection is not None:
        return _encode_session(args, model, link, source, protection, faults.for_clip(len(frames)))
    tx = Transmitter(link, model.encoder, fingerprint(model))
    writer = tx.stream_writer()
    latents, records = [], []
    with progress(len(frames), "encoding", args.json) as step:
        for frame in frames:
            tx.send_to_stream(tx.encode(frame)[0], writer)
            latents.append(tx.last_latent)
            records.append(tx.last)
            step()
    data = pack_stream(tx.header(len(frames)), writer.getvalue())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    # what the receiver will decode, to report fidelity at the transmitter (one batch)
    with torch.no_grad(), batch_work(len(latents), link.height, link.width):
        decoded = to_uint8(model.decoder(torch.stack(latents)))
    t = len(frames)
    summary = {"source": source.name, "output": str(args.output), "model": "sphere64", "quality": 1,
               "rule": link.rule, "tau": link.tau, "beta": link.beta, "frames": t, "bytes": len(data),
               "bits_per_frame_wire": 8 * len(data) / t,
               "bits_per_frame_paper": sum(r.paper_bits for r in records) / t,
               "hit_rate": sum(r.hit for r in records) / t, "psnr_db": psnr(frames, decoded),
               "ssim": ssim(frames, decoded), "memory_size": tx.memory.size,
               "records": [_record(r) for r in records]}
    if args.json:
        print_json(summary)
    else:
        from rich.table import Table

        table = Table(title=f"encoded {source.name} -> {args.output}", title_justify="left")
        for k in ("rule", "tau", "frames", "bytes", "bits_per_frame_wire", "bits_per_frame_paper", "hit_rate",
                  "psnr_db", "ssim", "memory_size"):
            v = summary[k]
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        out_console.print(table)
    return 0


def _record(r) -> dict:
    """One frame's record for ``--json`` (score is null while the memory is empty)."""
    return {"t": r.t, "hit": r.hit, "index": r.index, "score": round(r.score, 6) if np.isfinite(r.score) else None,
            "wire_bits": r.wire_bits, "packet_bits": r.packet_bits, "paper_bits": r.paper_bits,
            "memory_size": r.memory_size}


def _encode_session(args, model, link, source, protection, faults) -> int:
    """Faults or cues: run the link live (a file has no feedback channel) and write the session file."""
    from semcom.experiments.semantic_link import encode_frames, stream_protected
    from semcom.metrics import psnr, ssim
    from semcom.threads import batch_work

    frames = source.frames
    with progress(len(frames), "encoding", args.json):
        with batch_work(len(frames), link.height, link.width):  # the clip in batches
            latents = encode_frames(model, frames)
        result = stream_protected(latents, link, model, protection, faults, record=True)
    lost = result.extra.get("frames_lost", 0)
    if 2 * lost > len(frames) and not getattr(args, "allow_loss", False):
        raise SemcomError(f"the link lost {lost} of {len(frames)} frames under these faults; nothing written "
                          f"to {args.output} (pass --allow-loss to write the session anyway)")
    data = result.session
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    t = len(frames)
    summary = {"source": source.name, "output": str(args.output), "model": "sphere64", "quality": 1,
               "rule": link.rule, "tau": link.tau, "beta": link.beta, "frames": t, "bytes": len(data),
               "bits_per_frame_file": 8 * len(data) / t,
               "bits_per_frame_wire": result.wire_bits / t,
               "bits_per_frame_paper": sum(r.paper_bits for r in result.records) / t,
               "hit_rate": sum(r.hit for r in result.records) / t,
               "psnr_db": psnr(frames, result.decoded), "ssim": ssim(frames, result.decoded),
               "protection": protection.model_dump(), "fault_config": faults.model_dump(), **result.extra}
    if args.json:
        print_json(summary)
    else:
        from rich.table import Table

        table = Table(title=f"encoded {source.name} -> {args.output} (a session under faults)", title_justify="left")
        for k in ("rule", "frames", "bytes", "bits_per_frame_wire", "forward_bits_per_frame", "feedback_bits_per_frame",
                  "repair_bits_per_frame", "damaged_packets", "refreshes", "cue_failures", "lookups",
                  "repaired_slots", "frames_lost", "faults", "frames_to_resync", "psnr_db"):
            v = summary[k]
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        out_console.print(table)
    return 0



def _encode_codec(args) -> int:
    """The memory link over a spatial codec of the zoo (semcom.schemes.codec_link): a version-2 stream."""
    from semcom.metrics import ms_ssim, psnr
    from semcom.models.zoo import load_model
    from semcom.schemes.codec_link import CodecTransmitter, link_stats
    from semcom.sources import open_source

    check_no_sphere_flags(args)
    protection, faults = fault_configs(args)
    if protection is not None:
        raise ConfigError(f"faults and cues run on the sphere64 link only (-m sphere64), not on -m {args.model} yet")
    model = load_model(args.model, args.weights)
    hp = model.hparams
    cfg = codec_config(args, hp["height"], hp["width"])
    source = open_source(args.source, height=cfg.height, width=cfg.width, frames=args.frames, seed=args.seed)
    tx = CodecTransmitter(cfg, model)
    with progress(len(source), "encoding", args.json) as step:
        for frame in source.frames:
            tx.send(frame)
            step()
    data = tx.finish()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    frames, decoded, t = source.frames, np.stack(tx.decoded), len(source)
    summary = {"source": source.name, "output": str(args.output), "model": cfg.model, "quality": cfg.quality,
               "tau": cfg.tau, "memory": cfg.inter, "motion": cfg.motion and cfg.inter,
               "refine": cfg.refine, "bframes": cfg.bframes, "frames": t, "bytes": len(data),
               "bits_per_frame_wire": 8 * len(data) / t, **link_stats(tx.records),
               "psnr_db": psnr(frames, decoded), "ms_ssim": ms_ssim(frames, decoded),
               "memory_size": tx.memory.size,
               "records": [{"t": r.t, "kind": r.kind, "slot": r.slot, "tiles_hit": r.tiles_hit,
                            "tiles_predicted": r.tiles_predicted, "bits": round(r.bits, 2),
                            "memory_size": r.memory_size} for r in tx.records]}
    if args.json:
        print_json(summary)
    else:
        from rich.table import Table

        table = Table(title=f"encoded {source.name} -> {args.output}", title_justify="left")
        for k in ("model", "quality", "tau", "frames", "bytes", "bits_per_frame_wire", "hit_rate", "inter_rate",
                  "intra_rate", "motion_rate", "bi_rate", "tile_hit_rate", "psnr_db", "ms_ssim", "memory_size"):
            v = summary[k]
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        out_console.print(table)
    return 0


#: Flags of the memory link that the codebook scheme has no use for, with their defaults.
_MEMORY_ONLY = {"model": "hyperprior", "quality": None, "tau": None, "m_max": 256, "full_policy": "lru",
                "no_memory": False, "no_motion": False, "no_refine": False, "bframes": None}


def _encode_codebook(args) -> int:
    """The grounded codebook paper's scheme (semcom.schemes.codebook): a version-3 stream of index labels; or,
    with ``--scheme codebook-memory``, the memory link over its token grid (semcom.schemes.token_link), v4."""
    from semcom.metrics import ms_ssim, psnr
    from semcom.schemes.codebook import CodebookReceiver, CodebookTransmitter, load_variant
    from semcom.sources import open_source
    from semcom.threads import batch_work

    memory = args.scheme == "codebook-memory"
    shared = ("tau", "m_max", "full_policy") if memory else ()
    for key, default in _MEMORY_ONLY.items():
        if getattr(args, key) != default and key not in shared:
            flag = {"model": "-m/--model", "quality": "-q/--quality"}.get(key, "--" + key.replace("_", "-"))
            also = " or codebook-memory" if key in ("tau", "m_max", "full_policy") else ""
            raise ConfigError(f"{flag} applies to --scheme memory{also}, not to --scheme {args.scheme}")
    check_no_sphere_flags(args)
    protection, _ = fault_configs(args)
    if protection is not None:
        raise ConfigError("faults and cues run on the sphere64 memory link, not on --scheme codebook")
    model = load_variant(args.variant or "proposed", args.weights)
    hp = model.hparams
    source = open_source(args.source, height=hp["height"], width=hp["width"], frames=args.frames, seed=args.seed)
    tx = CodebookTransmitter(model)
    frames, t = source.frames, len(source)
    with batch_work(t, hp["height"], hp["width"]):  # the clip's indices in one batch: sent, or counted
        idx = tx.indices(frames)
    extra = {}
    with progress(t, "encoding", args.json):
        if memory:
            data, decoded, extra = _token_link(args, model, frames)
        else:
            with batch_work(t, hp["height"], hp["width"]):
                data = tx.encode_indices(idx)
                decoded = CodebookReceiver(model).decode(data)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    summary = {"source": source.name, "output": str(args.output), "scheme": args.scheme, "variant": hp["variant"],
               "J": model.J, "frames": t, "bytes": len(data), "bits_per_frame_wire": 8 * len(data) / t,
               "bits_per_frame_indices": model.bits_per_image,
               **model.usage(idx), "psnr_db": psnr(frames, decoded), "ms_ssim": ms_ssim(frames, decoded), **extra}
    if args.json:
        print_json(summary)
    else:
        from rich.table import Table

        table = Table(title=f"encoded {source.name} -> {args.output}", title_justify="left")
        for k in ("variant", "J", "frames", "bytes", "bits_per_frame_wire", "bits_per_frame_indices",
                  "index_entropy_bits", "used_codewords", "psnr_db", "ms_ssim", *extra):
            v = summary[k]
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        out_console.print(table)
    return 0


def _token_link(args, model, frames) -> tuple[bytes, np.ndarray, dict]:
    """The memory link over the token grid: the stream, what the receiver shows, and the link's shares."""
    import torch

    from semcom.config import validated
    from semcom.schemes.codebook import CodebookReceiver
    from semcom.schemes.token_link import KINDS, TokenLinkConfig, encode_clip

    hp = model.hparams
    cfg = validated(TokenLinkConfig, variant=hp["variant"], tau=1.0 if args.tau is None else args.tau,
                    m_max=args.m_max, full_policy=args.full_policy, height=hp["height"], width=hp["width"])
    data, tx = encode_clip(frames, cfg, model)
    shown = CodebookReceiver(model).frames(torch.stack(tx.shown))
    kinds = [r.kind for r in tx.records]
    stats = {f"{k}_rate": kinds.count(k) / len(kinds) for k in KINDS}
    stats["tile_hit_rate"] = sum(r.tiles_hit for r in tx.records) / sum(r.tiles for r in tx.records)
    return data, shown, {"tau": cfg.tau, "memory_size": tx.memory.size, **stats}
