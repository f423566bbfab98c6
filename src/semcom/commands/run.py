"""``semcom run``: the eight regimes through every rule, written to a run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

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
    jsonable,
    model_kind,
    out_console,
    print_json,
    progress,
    reject_codec_switches,
)
from semcom.config import DEFAULT_TAU, validated
from semcom.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("run", help=HELP["run"])
    add_link_args(p, multi_rule=True)
    p.add_argument("--regimes", nargs="+", default=None, help="regimes to run (default: all eight)")
    p.add_argument("--b-raw", type=int, default=None, help="B_raw bits per frame (default H*W*3*8)")
    p.add_argument("--omega", type=float, default=1.0, help="Omega of eq. (5)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/run-<time>)")
    p.add_argument("--channel", default=None, choices=["awgn", "rayleigh", "bsc", "mimo"],
                   help="send the packets over a physical channel (semcom.phy) with ARQ repair")
    p.add_argument("--snr-db", type=float, default=10.0, help="Es/N0 of the channel")
    p.add_argument("--modulation", default="qam16", choices=["bpsk", "qpsk", "qam16", "qam64"])
    p.add_argument("--code", default="ldpc-1/2", help="none or ldpc-R (e.g. ldpc-1/2, ldpc-2/3)")
    p.add_argument("--max-attempts", type=int, default=4,
                   help="ARQ attempts per packet (with faults: damaged packets a frame may suffer)")
    p.add_argument("--no-video", action="store_true", help="skip the side-by-side video")
    add_codec_switches(p)
    add_fault_args(p)
    add_threads_arg(p)
    add_device_arg(p)
    p.set_defaults(main=device_main(main))


def main(args) -> int:
    from semcom.experiments.semantic_link import RunConfig, run_semantic_link
    from semcom.models import fingerprint, load_autoencoder
    from semcom.report.figures import write_figures
    from semcom.report.html import write_report
    from semcom.report.tables import rows_table
    from semcom.report.video import write_side_by_side
    from semcom.sources import REGIMES, SCENARIOS
    from semcom.threads import frame_threads, torch_threads

    regimes = tuple(args.regimes or REGIMES)
    for r in regimes:
        if r not in REGIMES:
            raise ConfigError(f"invalid regimes: unknown regime {r!r} (choose from {', '.join(REGIMES)})")
    if model_kind(args) == "spatial":
        return _run_codec(args, regimes)
    reject_codec_switches(args, "-m sphere64")
    protection, faults = fault_configs(args)
    cfg = validated(RunConfig, protection=protection, faults=faults, rules=tuple(dict.fromkeys(args.rules)),
                    regimes=regimes, tau=DEFAULT_TAU if args.tau is None else args.tau,
                    beta=args.beta, m_max=args.m_max, full_policy=args.full_policy, coding=args.coding,
                    top_k=args.top_k, residual_bits=args.residual_bits, tau_refine=args.tau_refine,
                    index=args.index, seed=args.seed, frames=args.frames, b_raw_bits=args.b_raw, omega=args.omega,
                    channel=args.channel, snr_db=args.snr_db, modulation=args.modulation, code=args.code,
                    max_attempts=args.max_attempts)
    for rule in cfg.rules:  # validate every link config before the long work starts
        cfg.link(rule, 64, 64, 64)
    if cfg.channel is not None:  # and the physical layer
        from semcom.phy import DigitalLink

        DigitalLink(cfg.modulation, cfg.channel, cfg.code, snr_db=cfg.snr_db)
    model = load_autoencoder(args.weights)
    out = args.out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    threads = frame_threads()  # frames one at a time through the link: semcom.threads
    with progress(len(cfg.regimes) * len(cfg.rules), "streaming", args.json) as step, torch_threads(threads):
        results = run_semantic_link(cfg, model, progress=step)
    elapsed = time.perf_counter() - t0
    video = results.pop("video")
    config = {"run": cfg.model_dump(), "weights": str(args.weights or "shipped"),
              "weights_fingerprint": fingerprint(model).hex(), "model": model.hparams}
    results["meta"] = {"seconds": round(elapsed, 2), "threads": threads,
                       "semcom_version": _version()}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=jsonable))
    figures = write_figures(results, out)
    mp4 = None
    if video is not None and not args.no_video:
        mp4, still = write_side_by_side(video, out)
        figures.append(still)
    report = write_report(out, results, config, figures, mp4)
    if args.json:
        print_json(results)
        return 0
    by_scenario = {}
    for row in results["summary"]:
        by_scenario.setdefault(row["scenario"], []).append(row)
    for scenario in list(SCENARIOS) + [s for s in by_scenario if s not in SCENARIOS]:
        if scenario in by_scenario:
            regs = [r["regime"] for r in results["rows"] if r["scenario"] == scenario]
            out_console.print(rows_table(by_scenario[scenario],
                                         f"{scenario} ({', '.join(dict.fromkeys(regs))})", drop=("scenario", "regime")))
    if cfg.protected:
        from semcom.report.tables import FAULT_COLUMNS

        out_console.print(rows_table(results["rows"], "faults and their repair (per regime)", columns=FAULT_COLUMNS))
    out_console.print(f"run folder: {out}  (report: {report}, {elapsed:.1f} s)")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("semcom")
    except PackageNotFoundError:
        return "unknown"


CODEC_COLUMNS = [("scenario", "scenario", "{}"), ("regime", "regime", "{}"), ("memory", "memory", "{}"),
                 ("bits_per_frame_wire", "bits/frame", "{:.1f}"), ("psnr_db", "PSNR", "{:.2f}"),
                 ("ms_ssim", "MS-SSIM", "{:.3f}"), ("hit_rate", "hit", "{:.2f}"), ("inter_rate", "inter", "{:.2f}"),
                 ("intra_rate", "intra", "{:.2f}"), ("motion_rate", "motion", "{:.2f}"), ("bi_rate", "B", "{:.2f}"),
                 ("tile_hit_rate", "tiles hit", "{:.2f}"), ("memory_size", "M", "{}")]


def _run_codec(args, regimes) -> int:
    """The regimes through the codec link of a spatial model, memory on and off (semcom.experiments.codec_run)."""
    from semcom.experiments.codec_run import figure_frames, run_codec_link
    from semcom.models import fingerprint
    from semcom.models.zoo import load_model
    from semcom.report.html import table_html, write_page
    from semcom.report.tables import rows_table
    from semcom.threads import frame_work

    check_no_sphere_flags(args, {"b_raw": None, "omega": 1.0, "no_video": False})
    protection, faults = fault_configs(args)
    if protection is not None or args.channel is not None:
        raise ConfigError(f"faults and channels run on the sphere64 link only (-m sphere64), not on -m {args.model} "
                          "yet")
    model = load_model(args.model, args.weights)
    link = codec_config(args, model.hparams["height"], model.hparams["width"])
    out = args.out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with progress(len(regimes), "streaming", args.json) as step, frame_work():
        res = run_codec_link(regimes, link, model, args.seed, args.frames, progress=lambda r: step(r))
    elapsed = time.perf_counter() - t0
    decoded = res.pop("decoded")
    figures = figure_frames(decoded, res["timelines"], out, "cam_shake")
    config = {"run": link.model_dump() | {"regimes": list(regimes), "seed": args.seed, "frames": args.frames},
              "weights": str(args.weights or "shipped"), "weights_fingerprint": fingerprint(model).hex()}
    res["meta"] = {"seconds": round(elapsed, 2), "semcom_version": _version()}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(res, indent=2, default=jsonable))
    saving = [{"regime": k, "saving": v} for k, v in res["saving"].items()]
    write_page(out, f"semcom run: {link.model} q{link.quality}",
               [table_html(res["rows"], CODEC_COLUMNS),
                table_html(saving, [("regime", "regime", "{}"), ("saving", "bits saved by the memory", "{:.1%}")])],
               figures, config=config)
    if args.json:
        print_json(res)
        return 0
    out_console.print(rows_table(res["rows"], f"{link.model} quality {link.quality}, tau {link.tau:.3g}: "
                                 "the link on (memory and motion frames) and off (every frame intra)",
                                 columns=CODEC_COLUMNS))
    out_console.print(f"run folder: {out}  (report: {out / 'report.html'}, {elapsed:.1f} s)")
    return 0
