"""Helpers the sub-commands share: consoles, JSON output, progress bars, the link arguments."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console

from semcom.config import (
    DEFAULT_BETA,
    DEFAULT_BFRAMES,
    DEFAULT_TAU,
    FaultConfig,
    LinkConfig,
    ProtectionConfig,
    validated,
)
from semcom.errors import ConfigError

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


#: The default tau of the codec link's tile test (semcom.schemes.codec_link).
DEFAULT_CODEC_TAU = 0.9


def add_model_args(p: argparse.ArgumentParser, default: str = "sphere64") -> None:
    """``-m/--model NAME -q/--quality Q``, CompressAI's zoo convention (semcom.models.zoo)."""
    from semcom.models.zoo import MODELS

    p.add_argument("-m", "--model", default=default, help=f"model of the zoo: {', '.join(MODELS)} "
                   f"(default {default})")
    p.add_argument("-q", "--quality", type=int, default=None,
                   help="quality level of the model, 1 = fewest bits (default: hyperprior 4)")


def model_kind(args) -> str:
    """The zoo kind of ``args.model`` ("sphere" or "spatial"), checking the name and quality."""
    from semcom.models.zoo import check_quality, entry

    args.quality = check_quality(args.model, args.quality)
    return entry(args.model).kind


#: The codec link's switches (spatial models only): flag name -> what it leaves out.
CODEC_SWITCHES = {"no_motion": "no motion frames (the memory alone, for comparison)",
                  "no_refine": "no pixel refinement (the learned codec's own ceiling, for comparison)"}


def add_codec_switches(p: argparse.ArgumentParser, bframes: bool = True) -> None:
    """``--no-motion`` and ``--no-refine`` (:data:`CODEC_SWITCHES`), and (``bframes``) ``--bframes N``."""
    for name, what in CODEC_SWITCHES.items():
        p.add_argument("--" + name.replace("_", "-"), action="store_true", help="spatial models: " + what)
    if bframes:
        p.add_argument("--bframes", type=bounded_int(0, 7), default=None,
                       help=f"spatial models: the most frames coded as B-frames between two others (default "
                            f"{DEFAULT_BFRAMES}; 0 with --no-motion or --no-memory; 0: no frame held back)")


def reject_codec_switches(args, target: str) -> None:
    """A one-line error if a codec-link switch was given to ``target`` (a scheme or model without the codec link)."""
    for name in CODEC_SWITCHES:
        if getattr(args, name, False):
            raise ConfigError(f"--{name.replace('_', '-')} applies to the codec link (-m hyperprior), not to {target}")
    if getattr(args, "bframes", None) is not None:
        raise ConfigError(f"--bframes applies to the codec link (-m hyperprior), not to {target}")


def codec_config(args, height: int = 64, width: int = 64):
    """The codec link's config from the command line (semcom.schemes.codec_link)."""
    from semcom.schemes.codec_link import CodecLinkConfig

    tau = DEFAULT_CODEC_TAU if args.tau is None else args.tau
    inter, motion = not getattr(args, "no_memory", False), not getattr(args, "no_motion", False)
    bframes = getattr(args, "bframes", None)
    if bframes is None:
        bframes = DEFAULT_BFRAMES if inter and motion and hasattr(args, "bframes") else 0
    return validated(CodecLinkConfig, model=args.model, quality=args.quality, tau=tau, m_max=args.m_max,
                     full_policy=args.full_policy, inter=inter, motion=motion,
                     refine=not getattr(args, "no_refine", False), bframes=bframes, height=height, width=width)


def link_config(args, rule: str, model) -> LinkConfig:
    hp = model.hparams
    tau = DEFAULT_TAU if args.tau is None else args.tau
    return validated(LinkConfig, rule=rule, tau=tau, beta=args.beta, m_max=args.m_max,
                     full_policy=args.full_policy, coding=args.coding, top_k=args.top_k, d=hp["d"],
                     residual_bits=args.residual_bits, tau_refine=args.tau_refine,
                     height=hp["height"], width=hp["width"], index=getattr(args, "index", "exact"))


#: The most frames ``--frames`` may ask for: a version-1 stream's limit (semcom.link.wire.MAX_FRAMES);
#: clips are held in memory, T x H x W x 3 bytes.
MAX_CLIP_FRAMES = 1 << 14


def bounded_int(lo: int, hi: int):
    """An argparse type: an integer in ``lo..hi`` (argparse names the flag in its one-line error)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v

    parse.__name__ = "integer"
    return parse


#: Flags of the sphere64 memory link (the Hopfield paper's rules) and their defaults: a spatial model has no
#: use for them, so giving one with it is an error rather than silently ignored.
SPHERE_ONLY = {"rule": "hopfield", "rules": ["nearest", "hopfield", "paper"], "beta": DEFAULT_BETA,
               "coding": "fixed", "residual_bits": 0, "tau_refine": 0.995, "top_k": 4, "index": "exact"}


def check_no_sphere_flags(args, extra: dict | None = None) -> None:
    """A spatial model refuses the sphere64 link's flags, and ``extra`` ones of a command (one-line error
    naming the first one given)."""
    for key, default in (SPHERE_ONLY | (extra or {})).items():
        if getattr(args, key, default) != default:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} applies to -m sphere64 (the Hopfield paper's link), not to -m {args.model}")


def add_link_args(p: argparse.ArgumentParser, multi_rule: bool) -> None:
    if multi_rule:
        p.add_argument("--rules", nargs="+", default=["nearest", "hopfield", "paper"],
                       choices=["nearest", "hopfield", "paper"], help="decision rules to compare")
    else:
        p.add_argument("--rule", default="hopfield", choices=["nearest", "hopfield", "paper"])
    from semcom.models.zoo import DEFAULT_MODEL

    add_model_args(p, default=DEFAULT_MODEL)
    p.add_argument("--tau", type=float, default=None, help="similarity threshold tau in (0, 1), eq. (1) "
                   f"(default {DEFAULT_TAU} for sphere64, {DEFAULT_CODEC_TAU} for a spatial model's tile test)")
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
    p.add_argument("--index", default="exact", choices=["exact", "approx"],
                   help="how the transmitter finds candidates: exact scan, or a FAISS inverted file whose "
                   "candidates are re-scored exactly (large memories; the receiver needs no index)")
    p.add_argument("--frames", type=bounded_int(1, MAX_CLIP_FRAMES), default=None,
                   help=f"frames per clip, 1..{MAX_CLIP_FRAMES} (regimes: default per regime)")
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0, help="0..2^32-1")
    p.add_argument("--weights", type=Path, default=None, help="autoencoder weights (default: shipped)")
    p.add_argument("--json", action="store_true", help="print exact JSON instead of tables")


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch threads for the whole command, instead of the measured choice of semcom.threads
    (1 for per-frame work, torch's own count for large batches). :func:`semcom.cli.main` pins it."""
    p.add_argument("--threads", type=bounded_int(1, 1024), default=None, metavar="N",
                   help="torch threads, 1..1024 (default: 1 for per-frame work, the cores for large batches)")


def _device_name(text: str) -> str:
    """An argparse type: ``cpu``, ``cuda`` or ``cuda:N`` (checked against the machine by :func:`device_of`)."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d{1,3})?", text):
        raise argparse.ArgumentTypeError(f"invalid device {text!r}: choose cpu, cuda or cuda:N")
    return text


_device_name.__name__ = "device"


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda|cuda:N`` (issue 14): where the models' neural transforms run (semcom.models.device)."""
    p.add_argument("--device", type=_device_name, default="cpu", metavar="DEVICE",
                   help="cpu (default), cuda or cuda:N: where the models' neural transforms run; what decides "
                   "bits and memory contents stays on the CPU, so streams decode alike on either")


def device_of(args) -> str:
    """``args.device`` checked against the machine: a one-line error naming --device when CUDA is asked for and
    ``torch.cuda.is_available()`` is false, or the GPU index does not exist."""
    name = getattr(args, "device", None) or "cpu"
    if name == "cpu":
        return name
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); "
                          "use --device cpu")
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def device_main(main):
    """A command's ``main`` run :func:`on_device` (what ``p.set_defaults(main=device_main(main))`` gives)."""

    def run(args) -> int:
        with on_device(args):
            return main(args)

    run.__doc__, run.__wrapped__ = main.__doc__, main
    return run


@contextmanager
def on_device(args):
    """Within the block the zoo's loaders place every model on ``--device`` (semcom.models.device); yields it."""
    name = device_of(args)
    if name == "cpu":
        yield name
        return
    from semcom.models.device import default_device

    with default_device(name):
        yield name


def add_fault_args(p: argparse.ArgumentParser) -> None:
    """Protected packets and the faults to inject (docs/faults.md)."""
    g = p.add_argument_group("faults and their repair (protected packets over a faulty link with feedback)")
    g.add_argument("--cue-bits", type=int, default=None,
                   help="SimHash cue bits sent with every hit (the paper: 32; 0 = none)")
    g.add_argument("--cue-tolerance", type=float, default=0.25, help="fraction of cue bits allowed to differ")
    g.add_argument("--cue-of", default="prototype", choices=["prototype", "readout"],
                   help="what the cue fingerprints: the referenced prototype (the paper) or the rule's readout")
    g.add_argument("--sync-every", type=int, default=16,
                   help="a 32-bit memory check every N frames, resync on mismatch (0 = never, the paper)")
    g.add_argument("--checksum-bits", type=int, default=16, choices=[16, 32], help="CRC of short packets (hits)")
    g.add_argument("--ber", type=float, default=0.0, help="bit-error rate of the forward link (BSC)")
    g.add_argument("--erasure-rate", type=float, default=0.0, help="probability that a packet is lost")
    g.add_argument("--corrupt-ids", type=float, default=0.0, metavar="P",
                   help="permute the receiver's ID map for a fraction P of its entries")
    g.add_argument("--corrupt-sigma", type=float, default=0.0, metavar="S",
                   help="add N(0, S^2 I) to the receiver's stored prototypes (renormalised)")
    g.add_argument("--corrupt-at", type=int, default=None, metavar="FRAME",
                   help="frame of a one-off corruption (default: half-way through each clip)")
    g.add_argument("--corrupt-rate", type=float, default=0.0,
                   help="corrupt at each frame with this probability instead of once")


def fault_configs(args) -> tuple[ProtectionConfig | None, FaultConfig]:
    """The protection (None when no fault or cue flag is given) and the faults, validated."""
    faults = validated(FaultConfig, ber=args.ber, erasure_rate=args.erasure_rate, corrupt_ids=args.corrupt_ids,
                       corrupt_sigma=args.corrupt_sigma, corrupt_at=args.corrupt_at, corrupt_rate=args.corrupt_rate,
                       seed=args.seed)
    if args.cue_bits is None and not faults.active:
        return None, faults
    cue_bits = 32 if args.cue_bits is None else args.cue_bits
    return validated(ProtectionConfig, cue_bits=cue_bits, cue_tolerance=args.cue_tolerance, cue_of=args.cue_of,
                     sync_every=args.sync_every, checksum_bits=args.checksum_bits,
                     max_attempts=getattr(args, "max_attempts", 4)), faults
