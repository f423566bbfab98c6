"""``semcom bench``: throughput and retrieval time as ratios to a floor."""

from __future__ import annotations

from semcom.commands import HELP
from semcom.commands._common import add_device_arg, add_threads_arg, bounded_int, device_main, out_console, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help=HELP["bench"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("-m", "--model", action="append", default=None,
                   help="a zoo model to time beside sphere64 (repeatable; default: every model)")
    p.add_argument("-q", "--quality", type=int, default=None, help="quality of the spatial models timed")
    p.add_argument("--live", action="store_true", help="the live link over loopback (TCP, UDP, UDP with 10 %% "
                   "loss) against the in-process link: frames per second, latency per frame, feedback bits "
                   "(-m: the model, default sphere64)")
    p.add_argument("--m", "--memory-size", dest="memory_size", type=bounded_int(1, 10**7), action="append",
                   default=None, metavar="M", help="time retrieval only, at a memory of M prototypes (repeatable; "
                   "e.g. --m 1000000: floors, exact scan, decision rules and the approximate index as ratios)")
    p.add_argument("--index", default="approx", choices=["exact", "approx"],
                   help="approx (default): also build and time the approximate index at each memory size; "
                   "exact: the exact scan only")
    p.add_argument("--json", action="store_true")
    add_threads_arg(p)
    add_device_arg(p)
    p.set_defaults(main=device_main(main))


def main(args) -> int:
    from semcom.experiments.bench import format_bench, run_bench
    from semcom.models.zoo import MODELS, check_quality

    if args.live:
        return _live(args)
    models = args.model or list(MODELS)
    for m in models:
        check_quality(m, args.quality if m != "sphere64" else None)
    sizes = {} if args.memory_size is None else {"sizes": tuple(args.memory_size), "retrieval_only": True}
    result = run_bench(quick=args.quick, models=models, quality=args.quality, index=args.index, **sizes)
    if args.json:
        print_json(result)
    else:
        tables = format_bench(result)
        for t in tables if isinstance(tables, (list, tuple)) else [tables]:
            out_console.print(t)
    return 0


def _live(args) -> int:
    """``--live``: semcom.live.bench, one model (docs/live.md)."""
    from semcom.live.bench import format_live_bench, run_live_bench
    from semcom.models.zoo import check_quality

    if args.model and len(args.model) > 1:
        from semcom.errors import ConfigError

        raise ConfigError("bench --live times one model: give -m once")
    model = (args.model or ["sphere64"])[0]
    check_quality(model, args.quality if model != "sphere64" else None)
    result = run_live_bench(model=model, frames=16 if args.quick else 96, quality=args.quality)
    if args.json:
        print_json(result)
    else:
        out_console.print(format_live_bench(result))
    return 0
