"""``semcom ber``: Monte Carlo BER/BLER curves of the digital link against Eb/N0 or SNR."""

from __future__ import annotations

import argparse
from pathlib import Path

from semcom.commands import HELP
from semcom.commands._common import out_console, print_json, progress
from semcom.errors import ConfigError
from semcom.sweeps import add_sweep_args


def _floats(option: str):
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"invalid {option}={text!r}: expected comma-separated numbers, e.g. 0,2,4,6") from None
        if not values:
            raise ConfigError(f"invalid {option}={text!r}: no values")
        return values

    return parse


def add_parser(sub) -> None:
    p = sub.add_parser("ber", help=HELP["ber"],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--modulation", default="qpsk", choices=["bpsk", "qpsk", "qam16", "qam64"])
    p.add_argument("--channel", default="awgn", choices=["awgn", "rayleigh", "bsc", "mimo"])
    p.add_argument("--code", default="none", help="'none' or 'ldpc-R' (5G NR LDPC of rate R, e.g. ldpc-1/2)")
    axis = p.add_mutually_exclusive_group()
    axis.add_argument("--ebn0-db", type=str, default=None,
                      help="comma-separated Eb/N0 points in dB per information bit (default 0,2,4,6,8)")
    axis.add_argument("--snr-db", type=str, default=None, help="comma-separated Es/N0 points in dB instead")
    p.add_argument("--bits", type=int, default=10**6, help="most information bits simulated per point")
    p.add_argument("--target-errors", type=int, default=1000, help="a point stops after this many bit errors")
    p.add_argument("--codeword-bits", type=int, default=None, help="coded bits per codeword n (default 1536)")
    p.add_argument("--ldpc-iterations", type=int, default=20, help="belief-propagation iterations")
    p.add_argument("--demapping", default="app", choices=["app", "maxlog"])
    p.add_argument("--equalizer", default="lmmse", choices=["lmmse", "zf"], help="MIMO equaliser")
    p.add_argument("--num-tx-ant", type=int, default=8, help="MIMO transmit antennas")
    p.add_argument("--num-rx-ant", type=int, default=4, help="MIMO receive antennas")
    p.add_argument("--num-streams", type=int, default=None, help="MIMO streams (default min(tx, rx))")
    p.add_argument("--coherence-symbols", type=int, default=None,
                   help="Rayleigh coherence block in symbols (default one codeword)")
    p.add_argument("--bsc-p", type=float, default=None,
                   help="BSC crossover probability (default: the modulation's hard-decision AWGN BER)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", type=Path, default=None, help="write the curve to this image file (.png, .svg)")
    p.add_argument("--json", action="store_true", help="print exact JSON instead of a table")
    add_sweep_args(p, "each point's Monte Carlo blocks")
    p.set_defaults(main=main)


def main(args) -> int:
    from semcom.phy.ber import plot_ber, simulate_ber
    from semcom.sweeps import check_workers, sweep_strategy

    check_workers(args.workers, args.scheduler)

    if args.snr_db is not None:
        axis_name, values = "snr_db", _floats("--snr-db")(args.snr_db)
    else:
        axis_name, values = "ebn0_db", _floats("--ebn0-db")(args.ebn0_db or "0,2,4,6,8")
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"invalid --plot={str(args.plot)!r}: use a .png, .svg or .pdf file name")
    options = dict(ldpc_iterations=args.ldpc_iterations, demapping=args.demapping, equalizer=args.equalizer,
                   num_tx_ant=args.num_tx_ant, num_rx_ant=args.num_rx_ant, num_streams=args.num_streams,
                   coherence_symbols=args.coherence_symbols, bsc_p=args.bsc_p)
    if args.codeword_bits is not None:
        options["codeword_bits"] = args.codeword_bits
    with sweep_strategy(args.workers, args.scheduler) as strategy, progress(len(values), "ber", args.json) as step:
        points = simulate_ber(args.modulation, args.channel, args.code, **{axis_name: values},
                              target_errors=args.target_errors, max_bits=args.bits, seed=args.seed,
                              on_point=lambda pt: step(f"{getattr(pt, axis_name):g} dB"),
                              strategy=strategy, **options)
    result = {"modulation": args.modulation, "channel": args.channel, "code": args.code, "axis": axis_name,
              "target_errors": args.target_errors, "max_bits": args.bits, "seed": args.seed,
              "points": [p.to_dict() for p in points]}
    if args.plot is not None:
        title = f"{args.modulation}, {args.channel}, code {args.code}"
        result["plot"] = str(plot_ber(points, args.plot, title=title, x=axis_name))
    if args.json:
        print_json(result)
        return 0
    from rich.table import Table

    t = Table(title=f"BER: {args.modulation} over {args.channel}, code {args.code}")
    for col in ("Eb/N0 dB", "Es/N0 dB", "BER", "closed form", "BLER", "bits", "errors"):
        t.add_column(col, justify="right")
    for p in points:
        t.add_row(f"{p.ebn0_db:.2f}", f"{p.snr_db:.2f}", f"{p.ber:.3e}",
                  "-" if p.ber_theory is None else f"{p.ber_theory:.3e}",
                  "-" if p.bler is None else f"{p.bler:.3e}", str(p.bits), str(p.errors))
    out_console.print(t)
    if args.plot is not None:
        out_console.print(f"plot: {result['plot']}")
    return 0
