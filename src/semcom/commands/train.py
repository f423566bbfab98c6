"""``semcom train``: train the autoencoder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from semcom.commands._common import out_console, print_json, progress
from semcom.config import validated
from semcom.models import fingerprint


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train the autoencoder (default config reproduces the shipped weights)")
    p.add_argument("--images", default=None, help="a folder of images or a video file to train on "
                    "(default: the photographs bundled with scikit-image and scikit-learn)")
    p.add_argument("-o", "--output", type=Path, default=Path("ae.safetensors"))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--d", type=int, default=None, help="latent dimension")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(main=main)


def main(args) -> int:
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
    with progress(cfg.steps, "training", args.json) as step:
        model, losses = train_autoencoder(images, cfg, progress=lambda s, loss: step(f"mse {loss:.4f}"))
    path = save_autoencoder(model, args.output)
    summary = {"output": str(path), "data": data_name, "config": cfg.model_dump(), "final_mse":
               float(np.mean(losses[-50:])), "seconds": round(time.perf_counter() - t0, 1),
               "fingerprint": fingerprint(model).hex()}
    if args.json:
        print_json(summary)
    else:
        out_console.print(f"trained on {data_name}: final MSE {summary['final_mse']:.5f} "
                          f"({summary['seconds']} s) -> {path}")
    return 0
