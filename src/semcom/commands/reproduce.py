"""``semcom reproduce``: regenerate a paper's table or figure into a run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

from semcom.commands._common import jsonable, out_console, print_json, progress
from semcom.errors import ConfigError
from semcom.models import fingerprint, load_autoencoder


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="regenerate a paper's table or figure (semcom reproduce --list)")
    p.add_argument("name", nargs="?", help="what to reproduce (see --list)")
    p.add_argument("--list", action="store_true", help="list what can be reproduced")
    p.add_argument("--quick", action="store_true", help="a reduced version that keeps every row")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<name>-<time>)")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(main=main)


def main(args) -> int:
    from semcom.config import validated
    from semcom.experiments.hopfield_common import ReproConfig
    from semcom.experiments.registry import REPRODUCTIONS
    from semcom.report.html import table_html, write_page
    from semcom.report.tables import rows_table

    if args.list or not args.name:
        if args.json:
            print_json({n: r.description for n, r in REPRODUCTIONS.items()})
        else:
            for n, r in REPRODUCTIONS.items():
                out_console.print(f"[bold]{n}[/bold]  {r.description}")
        return 0
    if args.name not in REPRODUCTIONS:
        raise ConfigError(f"unknown reproduction {args.name!r} (choose from {', '.join(REPRODUCTIONS)})")
    repro = REPRODUCTIONS[args.name]
    cfg = ReproConfig.quick_version(seed=args.seed) if args.quick else validated(ReproConfig, seed=args.seed)
    model = load_autoencoder(args.weights)
    out = args.out or Path("runs") / f"{repro.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with progress(repro.steps(cfg), repro.name, args.json) as step:
        outcome = repro.run(cfg, model, step, out)
    seconds = time.perf_counter() - t0
    results = outcome.results | {"meta": {"seconds": round(seconds, 1), "quick": args.quick}}
    config = {"reproduction": repro.name, "config": cfg.model_dump(), "weights": str(args.weights or "shipped"),
              "weights_fingerprint": fingerprint(model).hex()}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=jsonable))
    blocks = [f"<p>{repro.description}. {seconds:.0f} s{' (--quick)' if args.quick else ''}.</p>"]
    for title, rows, cols in outcome.tables:
        blocks += [f"<h2>{title}</h2>", table_html(rows, cols)]
    write_page(out, f"semcom reproduce {repro.name}", blocks, outcome.figures, config=config)
    if args.json:
        print_json(results)
        return 0
    for title, rows, cols in outcome.tables:
        out_console.print(rows_table(rows, title, columns=cols))
    out_console.print(f"run folder: {out}  ({seconds:.0f} s)")
    return 0
