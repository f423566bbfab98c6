"""What each ``semcom`` sub-command does (argument parsing lives in :mod:`semcom.cli`)."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from semcom.config import LinkConfig, validated
from semcom.errors import ConfigError, SourceError, WireFormatError
from semcom.models import fingerprint, load_autoencoder

out_console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextmanager
def _progress(total: int, label: str, quiet: bool):
    """A rich progress bar on a terminal; silent when piped or with --json."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    enabled = not quiet and err_console.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, disable=not enabled, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda desc="": bar.update(task, advance=1, description=f"{label} {desc}")


def _link_config(args, rule: str, model) -> LinkConfig:
    hp = model.hparams
    return validated(LinkConfig, rule=rule, tau=args.tau, beta=args.beta, m_max=args.m_max,
                     full_policy=args.full_policy, top_k=args.top_k, d=hp["d"], height=hp["height"],
                     width=hp["width"])


# ---------------------------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from semcom.experiments.semantic_link import RunConfig, run_semantic_link
    from semcom.report.figures import write_figures
    from semcom.report.html import write_report
    from semcom.report.tables import rows_table
    from semcom.report.video import write_side_by_side
    from semcom.sources import REGIMES, SCENARIOS

    regimes = tuple(args.regimes or REGIMES)
    for r in regimes:
        if r not in REGIMES:
            raise ConfigError(f"invalid regimes: unknown regime {r!r} (choose from {', '.join(REGIMES)})")
    cfg = validated(RunConfig, rules=tuple(dict.fromkeys(args.rules)), regimes=regimes, tau=args.tau,
                    beta=args.beta, m_max=args.m_max, full_policy=args.full_policy, top_k=args.top_k,
                    seed=args.seed, frames=args.frames, b_raw_bits=args.b_raw, omega=args.omega)
    for rule in cfg.rules:  # validate every link config before the long work starts
        cfg.link(rule, 64, 64, 64)
    model = load_autoencoder(args.weights)
    out = args.out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with _progress(len(cfg.regimes) * len(cfg.rules), "streaming", args.json) as step:
        results = run_semantic_link(cfg, model, progress=step)
    elapsed = time.perf_counter() - t0
    video = results.pop("video")
    config = {"run": cfg.model_dump(), "weights": str(args.weights or "shipped"),
              "weights_fingerprint": fingerprint(model).hex(), "model": model.hparams}
    results["meta"] = {"seconds": round(elapsed, 2), "threads": torch.get_num_threads(),
                       "semcom_version": _version()}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
    figures = write_figures(results, out)
    mp4 = None
    if video is not None and not args.no_video:
        mp4, still = write_side_by_side(video, out)
        figures.append(still)
    report = write_report(out, results, config, figures, mp4)
    if args.json:
        _print_json(results)
        return 0
    by_scenario = {}
    for row in results["summary"]:
        by_scenario.setdefault(row["scenario"], []).append(row)
    for scenario in list(SCENARIOS) + [s for s in by_scenario if s not in SCENARIOS]:
        if scenario in by_scenario:
            regs = [r["regime"] for r in results["rows"] if r["scenario"] == scenario]
            out_console.print(rows_table(by_scenario[scenario],
                                         f"{scenario} ({', '.join(dict.fromkeys(regs))})", drop=("scenario", "regime")))
    out_console.print(f"run folder: {out}  (report: {report}, {elapsed:.1f} s)")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("semcom")
    except PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------- encode
def cmd_encode(args) -> int:
    from semcom.frames import to_uint8
    from semcom.link import Transmitter
    from semcom.link.wire import BitWriter, pack_stream
    from semcom.metrics import psnr, ssim
    from semcom.sources import open_source

    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"invalid frames={args.frames}: must be positive")
    model = load_autoencoder(args.weights)
    link = _link_config(args, args.rule, model)
    source = open_source(args.source, height=link.height, width=link.width, frames=args.frames, seed=args.seed)
    frames = source.frames
    tx = Transmitter(link, model.encoder, fingerprint(model))
    writer = BitWriter()
    latents, records = [], []
    with _progress(len(frames), "encoding", args.json) as step:
        for frame in frames:
            tx.send_to_stream(tx.encode(frame)[0], writer)
            latents.append(tx.last_latent)
            records.append(tx.last)
            step()
    data = pack_stream(tx.header(len(frames)), writer.getvalue())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    with torch.no_grad():  # what the receiver will decode, to report fidelity at the transmitter
        decoded = to_uint8(model.decoder(torch.stack(latents)))
    t = len(frames)
    summary = {"source": source.name, "output": str(args.output), "rule": link.rule, "tau": link.tau,
               "beta": link.beta, "frames": t, "bytes": len(data),
               "bits_per_frame_wire": 8 * len(data) / t,
               "bits_per_frame_paper": sum(r.paper_bits for r in records) / t,
               "hit_rate": sum(r.hit for r in records) / t, "psnr_db": psnr(frames, decoded),
               "ssim": ssim(frames, decoded), "memory_size": tx.memory.size,
               "records": [{"t": r.t, "hit": r.hit, "index": r.index, "score": round(r.score, 6)
                            if np.isfinite(r.score) else None, "wire_bits": r.wire_bits,
                            "packet_bits": r.packet_bits, "paper_bits": r.paper_bits, "memory_size": r.memory_size} for r in records]}
    if args.json:
        _print_json(summary)
    else:
        from rich.table import Table

        table = Table(title=f"encoded {source.name} -> {args.output}", title_justify="left")
        for k in ("rule", "tau", "frames", "bytes", "bits_per_frame_wire", "bits_per_frame_paper", "hit_rate",
                  "psnr_db", "ssim", "memory_size"):
            v = summary[k]
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        out_console.print(table)
    return 0


# ------------------------------------------------------------------------------------------- decode
def cmd_decode(args) -> int:
    from semcom.link import Receiver
    from semcom.link.wire import HEADER_SIZE
    from semcom.sources import VIDEO_EXTENSIONS, write_folder, write_video

    if not args.stream.is_file():
        raise SourceError(f"stream file not found: {args.stream}")
    data = args.stream.read_bytes()
    model = load_autoencoder(args.weights)
    rx, header = Receiver.from_header(data[:HEADER_SIZE], model.decoder, fingerprint(model))
    try:
        latents = list(rx.iter_stream(data, header.frames, HEADER_SIZE))
    except WireFormatError as exc:
        raise WireFormatError(f"{args.stream}: {exc}") from None
    frames = rx.decode(torch.stack(latents))
    if args.output.suffix.lower() in VIDEO_EXTENSIONS:
        write_video(args.output, frames, fps=args.fps)
    else:
        write_folder(args.output, frames)
    summary = {"stream": str(args.stream), "output": str(args.output), "frames": len(frames),
               "bytes": len(data), "bits_per_frame_wire": 8 * len(data) / len(frames), "rule": header.config.rule,
               "memory_size": rx.memory.size, "memory_digest": rx.memory.digest()}
    if args.json:
        _print_json(summary)
    else:
        out_console.print(f"decoded {len(frames)} frames ({len(data)} bytes, "
                          f"{summary['bits_per_frame_wire']:.2f} bits/frame) -> {args.output}")
    return 0


# -------------------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from semcom.models import save_autoencoder
    from semcom.training.autoencoder import TrainConfig, train_autoencoder

    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "d": args.d, "seed": args.seed}.items() if v is not None}
    cfg = validated(TrainConfig, **overrides)
    if args.images:
        from semcom.sources import open_source

        images = list(open_source(args.images, height=512, width=512).frames)
        data_name = args.images
    else:
        from semcom.sources.photos import bundled_photos

        images, data_name = list(bundled_photos().values()), "bundled photographs"
    t0 = time.perf_counter()
    with _progress(cfg.steps, "training", args.json) as step:
        model, losses = train_autoencoder(images, cfg, progress=lambda s, loss: step(f"mse {loss:.4f}"))
    path = save_autoencoder(model, args.output)
    summary = {"output": str(path), "data": data_name, "config": cfg.model_dump(), "final_mse":
               float(np.mean(losses[-50:])), "seconds": round(time.perf_counter() - t0, 1),
               "fingerprint": fingerprint(model).hex()}
    if args.json:
        _print_json(summary)
    else:
        out_console.print(f"trained on {data_name}: final MSE {summary['final_mse']:.5f} "
                          f"({summary['seconds']} s) -> {path}")
    return 0


# -------------------------------------------------------------------------------------------- bench
def cmd_bench(args) -> int:
    from semcom.experiments.bench import format_bench, run_bench

    result = run_bench(quick=args.quick)
    if args.json:
        _print_json(result)
    else:
        tables = format_bench(result)
        for t in tables if isinstance(tables, (list, tuple)) else [tables]:
            out_console.print(t)
    return 0
