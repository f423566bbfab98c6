"""``semcom attack``: clean and attacked accuracy of a shipped robust model (the robust masked VQ-VAE paper's
semantic noise, issue 11) on the held-out test split of the embedded ``mnist5k`` digits.

The attack is white box on the model's noiseless link (the attacker at the transmitter does not know the channel
realisation); with ``--snr`` both the clean and the attacked images then travel over the paper's link (8x4 MIMO,
16-QAM, LDPC 1/2; :mod:`semcom.robust.link`) at that SNR. ``fgsm`` is the iterative FGSM of eq. (7) (K = 5),
``pgd`` PGD with a random start (20 steps), both bounding the infinity norm of the noise on [0, 1] pixels by
``--epsilon``; ``universal`` is Algorithm 1's sample-independent noise of 2-norm ``--epsilon``, fitted on the
training split and added to every test image.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from semcom.commands import HELP
from semcom.commands._common import out_console, print_json
from semcom.errors import ConfigError

ATTACKS = ("fgsm", "pgd", "universal")


def add_parser(sub) -> None:
    p = sub.add_parser("attack", help=HELP["attack"])
    p.add_argument("--model", required=True, help="a shipped robust model: masked-vqvae+fim+at, masked-vqvae+at, "
                   "masked-vqvae, jscc+at, jscc, jpeg-classifier+at, jpeg-classifier, masked-vqvae-tasks")
    p.add_argument("--attack", choices=ATTACKS, default="fgsm")
    p.add_argument("--epsilon", type=float, default=0.016, help="noise budget: infinity norm on [0, 1] pixels "
                   "(fgsm, pgd; the paper's 0.016 by default), 2-norm of the whole noise (universal)")
    p.add_argument("--snr", type=float, default=None, help="send clean and attacked images over the paper's link "
                   "at this SNR in dB (default: a noiseless link)")
    p.add_argument("--dataset", default=None, help="labelled test data: mnist5k (default, its held-out test "
                   "split), or the path of a CIFAR-10 python folder, a Stanford Cars folder or an image folder "
                   "(its test split, resized to the model's input)")
    p.add_argument("--weights", type=Path, default=None, help="weights file to use instead of the shipped one")
    p.add_argument("--limit", type=int, default=None, help="attack only this many test images (seeded draw)")
    p.add_argument("--seed", type=int, default=0, help="seed of the channel and of --limit's draw")
    p.add_argument("--json", action="store_true")
    p.set_defaults(main=main)


def _check_epsilon(eps) -> float:
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"invalid epsilon={eps!r}: must be a finite number >= 0")
    return float(eps)


def _test_data(args, model):
    from semcom.sources.labelled import load_labelled

    c = model.config
    spec = args.dataset or "mnist5k"
    data = load_labelled(spec, "test", size=(c.height, c.width), seed=0, limit=args.limit)
    data = data.with_channels(c.channels) if c.channels in (1, 3) else data
    if int(data.labels.max()) >= c.n_classes:
        raise ConfigError(f"dataset {spec} has {data.num_classes} classes; the model classifies {c.n_classes}")
    return data, spec


def _fit_data(spec: str, model):
    from semcom.sources.labelled import load_labelled

    c = model.config
    data = load_labelled(spec, "train", size=(c.height, c.width), seed=0, limit=1000)
    return data.with_channels(c.channels)


def main(args) -> int:
    from semcom.robust.zoo import accuracy_of, check_variant, craft, load_variant

    eps = _check_epsilon(args.epsilon)
    check_variant(args.model)
    if args.snr is not None and (not math.isfinite(args.snr) or not -50 <= args.snr <= 100):
        raise ConfigError(f"invalid snr={args.snr!r}: must be a finite number of dB in [-50, 100]")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"invalid limit={args.limit!r}: must be a positive integer")
    if args.dataset is not None:
        from semcom.sources.labelled import EMBEDDED, dataset_format

        if args.dataset not in EMBEDDED:
            dataset_format(args.dataset)  # a one-line SourceError for a missing path or a wrong format
    if args.weights is not None:
        from semcom.robust.weights import load_robust

        model = load_robust(args.weights)
    else:
        model = load_variant(args.model)
    data, spec = _test_data(args, model)
    t0 = time.perf_counter()
    fit = None
    if args.attack == "universal":
        f = _fit_data(spec, model)
        fit = (f.images, f.labels)
    adv = craft(args.model, model, data.images, data.labels, args.attack, eps, args.snr, fit=fit)
    clean = accuracy_of(args.model, model, data.images, data.labels, args.snr, seed=args.seed)
    attacked = accuracy_of(args.model, model, adv, data.labels, args.snr, seed=args.seed)
    linf = float((adv - data.images).abs().flatten(1).amax(1).max()) if len(adv) else 0.0
    result = {"model": args.model, "attack": args.attack, "epsilon": eps, "snr_db": args.snr,
              "dataset": spec, "split": "test", "samples": len(data),
              "clean_accuracy": clean, "attacked_accuracy": attacked,
              "accuracy_drop": clean - attacked, "max_abs_perturbation": linf,
              "weights": str(args.weights) if args.weights else f"shipped:{args.model}",
              "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print_json(result)
    else:
        link = "noiseless link" if args.snr is None else f"link at {args.snr:g} dB"
        out_console.print(f"{args.model} on {spec} test ({len(data)} images, {link}): clean {clean:.4f}, "
                          f"{args.attack} eps={eps:g}: {attacked:.4f}")
    return 0
