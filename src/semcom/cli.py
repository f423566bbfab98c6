"""The ``semcom`` command.

Every command prints a human table by default and exact JSON with ``--json``.
Bad input ends the command with a one-line ``semcom: error: ...`` on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from semcom.config import DEFAULT_BETA, DEFAULT_TAU
from semcom.errors import ConfigError, SemcomError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise ConfigError(f"{self.prog}: {message}")


def _link_args(p: argparse.ArgumentParser, multi_rule: bool) -> None:
    if multi_rule:
        p.add_argument("--rules", nargs="+", default=["nearest", "hopfield", "paper"],
                       choices=["nearest", "hopfield", "paper"], help="decision rules to compare")
    else:
        p.add_argument("--rule", default="hopfield", choices=["nearest", "hopfield", "paper"])
    p.add_argument("--tau", type=float, default=DEFAULT_TAU, help="similarity threshold tau in (0, 1), eq. (1)")
    p.add_argument("--beta", type=float, default=DEFAULT_BETA, help="inverse temperature beta of eq. (4)")
    p.add_argument("--m-max", type=int, default=256, help="memory capacity M_max")
    p.add_argument("--full-policy", default="lru", choices=["none", "lru"],
                   help="when full: 'none' stores nothing (the paper), 'lru' replaces the least recently used")
    p.add_argument("--top-k", type=int, default=4, help="candidates the hopfield rule re-scores")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (regimes: default per regime)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, default=None, help="autoencoder weights (default: shipped)")
    p.add_argument("--json", action="store_true", help="print exact JSON instead of tables")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="semcom", description="Semantic communication with shared memories.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="stream the eight regimes through every rule; write a run folder")
    _link_args(run, multi_rule=True)
    run.add_argument("--regimes", nargs="+", default=None, help="regimes to run (default: all eight)")
    run.add_argument("--b-raw", type=int, default=None, help="B_raw bits per frame (default H*W*3*8)")
    run.add_argument("--omega", type=float, default=1.0, help="Omega of eq. (5)")
    run.add_argument("--out", type=Path, default=None, help="run folder (default runs/run-<time>)")
    run.add_argument("--no-video", action="store_true", help="skip the side-by-side video")

    enc = sub.add_parser("encode", help="transmitter: SOURCE -> stream file")
    enc.add_argument("source", help="a regime name, a video file or a folder of images")
    enc.add_argument("-o", "--output", type=Path, required=True, help="stream file to write")
    _link_args(enc, multi_rule=False)

    dec = sub.add_parser("decode", help="receiver: stream file -> video file or folder of PNG frames")
    dec.add_argument("stream", type=Path)
    dec.add_argument("-o", "--output", type=Path, required=True,
                     help="a video file (.mp4, .mkv, .avi) or a folder for PNG frames")
    dec.add_argument("--weights", type=Path, default=None)
    dec.add_argument("--fps", type=int, default=12)
    dec.add_argument("--json", action="store_true")

    tr = sub.add_parser("train", help="train the autoencoder (default config reproduces the shipped weights)")
    tr.add_argument("--images", default=None, help="a folder of images or a video file to train on "
                    "(default: the photographs bundled with scikit-image and scikit-learn)")
    tr.add_argument("-o", "--output", type=Path, default=Path("ae.safetensors"))
    tr.add_argument("--steps", type=int, default=None)
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--d", type=int, default=None, help="latent dimension")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--json", action="store_true")

    be = sub.add_parser("bench", help="throughput and retrieval time, as ratios to a floor in the same run")
    be.add_argument("--quick", action="store_true")
    be.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``semcom`` console script."""
    try:
        args = build_parser().parse_args(argv)
        from semcom import commands

        return getattr(commands, f"cmd_{args.command}")(args)
    except SemcomError as exc:
        print(f"semcom: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"semcom: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("semcom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
