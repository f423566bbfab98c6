"""``semcom reproduce``: regenerate a paper's table or figure into a run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

from semcom.commands import HELP
from semcom.commands._common import (
    add_device_arg,
    add_threads_arg,
    device_main,
    jsonable,
    out_console,
    print_json,
    progress,
)
from semcom.errors import ConfigError
from semcom.sweeps import add_sweep_args


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help=HELP["reproduce"])
    p.add_argument("name", nargs="?", help="what to reproduce (see --list)")
    p.add_argument("--list", action="store_true", help="list what can be reproduced")
    p.add_argument("--quick", action="store_true", help="a reduced version that keeps every row")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<name>-<time>)")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snr", type=float, nargs="+", default=None,
                   help="codebook-fig3/fig4: the SNRs in dB (default 0 2 ... 20)")
    p.add_argument("--code", choices=("none", "ldpc-1/2"), default=None,
                   help="codebook-fig3/fig4: channel code of the VQ-VAE index bits (default none)")
    p.add_argument("--mu", type=float, default=None, help="codebook-j: bandwidth weight mu of eq. (21) (default 0)")
    p.add_argument("--lpips-vgg16", default=None, metavar="FILE",
                   help="codebook-fig3/fig4: a local torchvision VGG16 state dict, to compute LPIPS")
    p.add_argument("--lpips-lin", default=None, metavar="FILE",
                   help="codebook-fig3/fig4: the lpips package's vgg.pth linear weights (default: LPIPS baseline)")
    p.add_argument("--json", action="store_true")
    add_sweep_args(p)
    add_threads_arg(p)
    add_device_arg(p)
    p.set_defaults(main=device_main(main))


def main(args) -> int:
    from semcom.experiments.registry import REPRODUCTIONS
    from semcom.models import load_autoencoder

    if args.list or not args.name:
        if args.json:
            print_json({n: r.description for n, r in REPRODUCTIONS.items()})
        else:
            for n, r in REPRODUCTIONS.items():
                out_console.print(f"[bold]{n}[/bold]  {r.description}")
            out_console.print("[bold]all[/bold]  every one of them, each in its own sub-folder")
        return 0
    names = list(REPRODUCTIONS) if args.name == "all" else [args.name]
    for name in names:
        if name not in REPRODUCTIONS:
            raise ConfigError(f"unknown reproduction {name!r} (choose from {', '.join(REPRODUCTIONS)}, all)")
    for opt in _OPTIONS:
        takers = [n for n in names if opt in REPRODUCTIONS[n].options]
        if getattr(args, opt) is not None and not takers:
            raise ConfigError(f"--{opt.replace('_', '-')} applies to "
                              f"{', '.join(n for n, r in REPRODUCTIONS.items() if opt in r.options)}, not {args.name}")
    from semcom.sweeps import check_workers, sweep_strategy

    check_workers(args.workers, args.scheduler)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = args.out or Path("runs") / f"{args.name}-{stamp}"
    model = load_autoencoder(args.weights)
    t0 = time.perf_counter()
    collected = {}
    with sweep_strategy(args.workers, args.scheduler) as strategy:  # one cluster for every reproduction
        for name in names:
            out = root / name if len(names) > 1 else root
            collected[name] = _reproduce(REPRODUCTIONS[name], args, model, out, strategy)
    if len(names) > 1:
        total = time.perf_counter() - t0
        (root / "timing.json").write_text(json.dumps({"seconds": round(total, 1), "quick": args.quick,
                                                      "each": {n: r["meta"]["seconds"] for n, r in collected.items()}},
                                                     indent=2))
        if args.json:
            print_json(collected)
        else:
            out_console.print(f"all reproductions: {root}  ({total:.0f} s)")
    elif args.json:
        print_json(collected[names[0]])
    return 0


#: Options of ``semcom reproduce`` that only some reproductions take (Reproduction.options).
_OPTIONS = ("snr", "code", "mu", "lpips_vgg16", "lpips_lin")


def _reproduce(repro, args, model, out: Path, strategy=None) -> dict:
    """Run one reproduction into ``out``, its sweeps' cells on ``strategy`` (semcom.sweeps); print its tables
    unless --json; return its results."""
    from semcom.config import validated
    from semcom.experiments.hopfield_common import ReproConfig
    from semcom.models import fingerprint
    from semcom.report.html import table_html, write_page
    from semcom.report.tables import rows_table

    cfg = ReproConfig.quick_version(seed=args.seed) if args.quick else validated(ReproConfig, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    options = {k: getattr(args, k) for k in repro.options if getattr(args, k) is not None}
    with progress(repro.steps(cfg, **options), repro.name, args.json) as step:
        outcome = repro.run(cfg, model, step, out, strategy=strategy, **options)
    seconds = time.perf_counter() - t0
    results = outcome.results | {"meta": {"seconds": round(seconds, 1), "quick": args.quick,
                                          "sweep": str(strategy or "serial")}}
    config = {"reproduction": repro.name, "config": cfg.model_dump(), "weights": str(args.weights or "shipped"),
              "weights_fingerprint": fingerprint(model).hex(), "options": options}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=jsonable))
    blocks = [f"<p>{repro.description}. {seconds:.0f} s{' (--quick)' if args.quick else ''}.</p>"]
    blocks += [f"<p>{note}</p>" for note in outcome.notes]
    for title, rows, cols in outcome.tables:
        blocks += [f"<h2>{title}</h2>", table_html(rows, cols)]
    write_page(out, f"semcom reproduce {repro.name}", blocks, outcome.figures, config=config)
    if not args.json:
        for title, rows, cols in outcome.tables:
            out_console.print(rows_table(rows, title, columns=cols))
        for note in outcome.notes:
            out_console.print(note)
        out_console.print(f"run folder: {out}  ({seconds:.0f} s)")
    return results
