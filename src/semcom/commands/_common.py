"""Helpers the sub-commands share: consoles, JSON output, progress bars, the link arguments."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console

from semcom.config import DEFAULT_BETA, DEFAULT_TAU, LinkConfig, validated

out_console = Console(width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True)


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=jsonable) + "\n")


def jsonable(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextmanager
def progress(total: int, label: str, quiet: bool):
    """A rich progress bar on a terminal; silent when piped or with --json."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    enabled = not quiet and err_console.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, disable=not enabled, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda desc="": bar.update(task, advance=1, description=f"{label} {desc}")


def link_config(args, rule: str, model) -> LinkConfig:
    hp = model.hparams
    return validated(LinkConfig, rule=rule, tau=args.tau, beta=args.beta, m_max=args.m_max,
                     full_policy=args.full_policy, coding=args.coding, top_k=args.top_k, d=hp["d"],
                     residual_bits=args.residual_bits, tau_refine=args.tau_refine,
                     height=hp["height"], width=hp["width"])


def add_link_args(p: argparse.ArgumentParser, multi_rule: bool) -> None:
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
    p.add_argument("--coding", default="fixed", choices=["fixed", "adaptive"],
                   help="stream coding: fixed-length fields (the paper) or adaptive arithmetic coding")
    p.add_argument("--residual-bits", type=int, default=0,
                   help="residual refinement: bits per dimension of eq. 2's epsilon on hits below --tau-refine")
    p.add_argument("--tau-refine", type=float, default=0.995, help="hits scoring below this carry a residual")
    p.add_argument("--top-k", type=int, default=4, help="candidates the hopfield rule re-scores")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (regimes: default per regime)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, default=None, help="autoencoder weights (default: shipped)")
    p.add_argument("--json", action="store_true", help="print exact JSON instead of tables")
