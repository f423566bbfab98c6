"""``semcom train``: train the autoencoder, run the Hopfield paper's Algorithm 1, or train the beta-VAE.

``--algorithm autoencoder`` (default) is the plain MSE loop that reproduces the
shipped weights; ``algorithm1`` is the joint training of encoder, decoder and
tau under the Lagrangian (7) (:mod:`semcom.training.algorithm1`), usually as a
fine-tuning stage from ``--init`` weights; ``beta-vae`` trains the beta-VAE
encoder variant (:mod:`semcom.training.beta_vae`). ``--out DIR`` writes the
run's record: ``config.json``, ``results.json`` and, for Algorithm 1, the
per-epoch ``trajectories.json`` and ``trajectories.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from semcom.commands import HELP
from semcom.commands._common import (
    add_device_arg,
    add_model_args,
    device_of,
    jsonable,
    model_kind,
    out_console,
    print_json,
    progress,
)
from semcom.config import validated
from semcom.errors import ConfigError

ALGORITHMS = ("autoencoder", "algorithm1", "beta-vae", "codebook", "robust")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help=HELP["train"])
    p.add_argument("--algorithm", choices=ALGORITHMS, default="autoencoder",
                   help="autoencoder: plain MSE training (default); algorithm1: the Hopfield paper's Algorithm 1, "
                   "Lagrangian (7); beta-vae: the beta-VAE encoder variant; codebook: the grounded codebook "
                   "paper's VQ-VAE (--variant); robust: the robust masked VQ-VAE paper's shipped models (--variant, "
                   "--dataset)")
    p.add_argument("--images", default=None, help="a folder of images or a video file to train on "
                   "(default: the photographs bundled with scikit-image and scikit-learn; "
                   "for algorithm1, the content regimes rendered with seeds >= --train-seed)")
    p.add_argument("-o", "--output", type=Path, default=Path("ae.safetensors"))
    p.add_argument("--out", type=Path, default=None, help="run folder for config.json, results.json and, "
                   "for algorithm1, trajectories.json and trajectories.png")
    p.add_argument("--init", type=Path, default=None, help="start from these weights (algorithm1, beta-vae)")
    p.add_argument("--steps", type=int, default=None, help="training steps (algorithm1: steps per epoch)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of Algorithm 1 (one dual step each)")
    p.add_argument("--batch-size", type=int, default=None, help="frames per batch (algorithm1: clips per batch)")
    p.add_argument("--clip-frames", type=int, default=None, help="algorithm1: frames per training clip")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--d", "--latent-dim", dest="d", type=int, default=None,
                   help="latent dimension (--latent-dim under torchrun, whose parser misreads --d)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--d0", type=float, default=None, help="algorithm1: target distortion D0 (MSE); default "
                   "0.5 dB below the --init (or shipped) model's every-frame-a-miss PSNR")
    p.add_argument("--alpha", type=float, default=None, help="algorithm1: sharpness of the soft hit")
    p.add_argument("--tau-init", type=float, default=None)
    p.add_argument("--tau-mode", choices=("gradient", "grid"), default=None,
                   help="algorithm1: tau by gradient steps or by a grid search once per epoch")
    p.add_argument("--eta-tau", type=float, default=None)
    p.add_argument("--lambda-init", type=float, default=None)
    p.add_argument("--eta-lambda", type=float, default=None, help="algorithm1: step size of the dual step (8)")
    p.add_argument("--encoder", choices=("autoencoder", "beta-vae"), default=None,
                   help="algorithm1: the encoder it trains")
    p.add_argument("--beta-kl", type=float, default=None, help="beta-VAE KL weight per pixel value")
    p.add_argument("--train-seed", type=int, default=None, help="algorithm1: first regime seed (eval uses 0)")
    p.add_argument("--regimes", nargs="+", default=None, help="algorithm1: the content regimes to train on")
    p.add_argument("--pool-seeds", type=int, default=None, help="algorithm1: rendered clips per regime")
    p.add_argument("--dataset", default=None, help="robust: mnist5k (default), digits, or the path of a CIFAR-10 "
                   "python folder, a Stanford Cars folder or an image folder")
    p.add_argument("--variant", default=None, help="robust: one of the shipped models (masked-vqvae+fim+at, ...); "
                   "codebook: vqvae, vqvae+entropy, vqvae+channel or proposed "
                   "(the paper's ablation; default proposed)")
    p.add_argument("--J", type=int, default=None, help="codebook: codebook size, a power of two in 16..4096")
    p.add_argument("--p", type=float, default=None, help="codebook: BSC flip probability of the channel-aware "
                   "loss (default: 64-QAM over Rayleigh at 10 dB, 0.205)")
    p.add_argument("--vgg16", type=Path, default=None, help="codebook: a local VGG16 state dict for the paper's "
                   "perceptual term (without it: MSE + MS-SSIM)")
    add_model_args(p)
    add_device_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(main=main)


#: Options that only some algorithms take: option -> (config field, algorithms that take it).
_ONLY = {
    "init": ("init", ("algorithm1", "beta-vae", "robust")),
    "epochs": ("epochs", ("algorithm1",)),
    "clip_frames": ("clip_frames", ("algorithm1",)),
    "d0": ("d0", ("algorithm1",)),
    "alpha": ("alpha", ("algorithm1",)),
    "tau_init": ("tau_init", ("algorithm1",)),
    "tau_mode": ("tau_mode", ("algorithm1",)),
    "eta_tau": ("eta_tau", ("algorithm1",)),
    "lambda_init": ("lambda_init", ("algorithm1",)),
    "eta_lambda": ("eta_lambda", ("algorithm1",)),
    "encoder": ("encoder", ("algorithm1",)),
    "beta_kl": ("beta_kl", ("algorithm1", "beta-vae")),
    "train_seed": ("train_seed", ("algorithm1",)),
    "regimes": ("regimes", ("algorithm1",)),
    "pool_seeds": ("pool_seeds", ("algorithm1",)),
    "variant": ("variant", ("codebook", "robust")),
    "dataset": ("dataset", ("robust",)),
    "J": ("J", ("codebook",)),
    "p": ("p", ("codebook",)),
    "vgg16": ("vgg16", ("codebook",)),
}


def _check_options(args) -> None:
    for opt, (_, algos) in _ONLY.items():
        if getattr(args, opt) is not None and args.algorithm not in algos:
            flag = "--" + opt.replace("_", "-")
            raise ConfigError(f"{flag} applies to --algorithm {' / '.join(algos)}, not {args.algorithm}")


def _images(args) -> tuple[list, str]:
    if args.images:
        from semcom.sources import open_source

        return list(open_source(args.images, height=512, width=512).frames), args.images
    from semcom.sources.photos import bundled_photos

    return list(bundled_photos().values()), "bundled photographs"


def main(args) -> int:
    """Train on this process, or on every process of a torchrun launch (semcom.training.distributed): each rank
    trains on its slice of the global batch; rank 0 alone writes the weights, the run folder and the summary."""
    from semcom.training.distributed import distributed, refuse_distributed

    _check_options(args)
    if args.algorithm == "robust":
        return _robust(args)
    device = device_of(args)
    if args.algorithm == "codebook":
        from semcom.training.vqvae import NOT_DISTRIBUTED

        refuse_distributed("--algorithm codebook", NOT_DISTRIBUTED)
    with distributed(device) as dist:
        return _main(args, dist)


def _main(args, dist) -> int:
    t0 = time.perf_counter()
    spatial = model_kind(args) == "spatial"
    if spatial and args.algorithm not in ("autoencoder", "codebook"):
        raise ConfigError(f"--algorithm {args.algorithm} trains sphere64, not {args.model}")
    if args.algorithm == "codebook":
        summary, model, extra = _codebook(args, dist)
    elif spatial:
        summary, model, extra = _codec(args, dist)
    elif args.algorithm == "algorithm1":
        summary, model, extra = _algorithm1(args, dist)
    elif args.algorithm == "beta-vae":
        summary, model, extra = _beta_vae(args, dist)
    else:
        summary, model, extra = _autoencoder(args, dist)
    if not dist.is_main:  # rank 0 writes the weights and the record
        return 0
    summary["processes"] = dist.world_size
    algorithm = "rate-distortion" if spatial and args.algorithm != "codebook" else args.algorithm
    model_name = "codebook" if algorithm == "codebook" else args.model
    summary = {"algorithm": algorithm, "model": model_name, "output": str(extra.pop("path"))} | summary
    from semcom.models import fingerprint

    summary |= {"seconds": round(time.perf_counter() - t0, 1), "fingerprint": fingerprint(model).hex()}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "config.json").write_text(json.dumps({"algorithm": algorithm, **summary["config"]},
                                                         indent=2, default=jsonable))
        (args.out / "results.json").write_text(json.dumps(summary | extra, indent=2, default=jsonable))
        summary["out"] = str(args.out)
    if args.json:
        print_json(summary)
    elif algorithm == "codebook":
        v = summary["validation"] or {}
        out_console.print(f"codebook {summary['config']['variant']} J={summary['config']['J']} on {summary['data']} "
                          f"({summary['seconds']} s) -> {summary['output']}; validation (held-out photos, no "
                          f"errors): {v.get('psnr_db', float('nan')):.2f} dB, {v.get('used_codewords')} codewords "
                          f"used, index entropy {v.get('index_entropy_bits', float('nan')):.2f} bits")
    elif spatial:
        q = summary["validation"] or []
        out_console.print(f"{args.model} on {summary['data']} ({summary['seconds']} s) -> {summary['output']}; "
                          "validation (held-out photos): " + ", ".join(
                              f"q{r['quality']} {r['psnr_db']:.2f} dB {r['bits_per_frame']:.0f} bits" for r in q))
    else:
        line = f"{args.algorithm} on {summary['data']}: final MSE {summary['final_mse']:.5f}"
        if args.algorithm == "algorithm1":
            line += f", tau {summary['tau']:.4f}, lambda {summary['lambda']:.4g}, D0 {summary['d0']:.5f}"
        out_console.print(f"{line} ({summary['seconds']} s) -> {summary['output']}"
                          + (f"; run folder {args.out}" if args.out else ""))
    return 0


def _autoencoder(args, dist):
    from semcom.models import save_autoencoder
    from semcom.training.autoencoder import TrainConfig, train_autoencoder

    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "d": args.d, "seed": args.seed}.items() if v is not None}
    cfg = validated(TrainConfig, **overrides)
    images, data_name = _images(args)
    with progress(cfg.steps, "training", args.json or not dist.is_main) as step:
        model, losses = train_autoencoder(images, cfg, progress=lambda s, loss: step(f"mse {loss:.4f}"), dist=dist)
    path = save_autoencoder(model, args.output) if dist.is_main else None
    return ({"data": data_name, "config": cfg.model_dump(), "final_mse": float(np.mean(losses[-50:]))},
            model, {"path": path, "losses": losses})


def _load_init(args):
    if args.init is None:
        return None
    from semcom.models import load_autoencoder

    return load_autoencoder(args.init)


def _beta_vae(args, dist):
    from semcom.training.algorithm1 import save_trained
    from semcom.training.beta_vae import BetaVAEConfig, train_beta_vae

    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "d": args.d, "seed": args.seed, "beta_kl": args.beta_kl}.items()
                 if v is not None}
    cfg = validated(BetaVAEConfig, **overrides)
    init = _load_init(args)
    images, data_name = _images(args)
    with progress(cfg.steps, "beta-VAE", args.json or not dist.is_main) as step:
        vae, log = train_beta_vae(images, cfg, init=init, dist=dist,
                                  progress=lambda s, r: step(f"mse {r['mse']:.4f} kl {r['kl']:.1f}"))
    model = vae.to_autoencoder()
    path = save_trained(model, args.output, kind="beta-vae-mean", algorithm="beta-vae",
                        beta_kl=cfg.beta_kl) if dist.is_main else None
    summary = {"data": data_name, "config": cfg.model_dump() | {"init": str(args.init) if args.init else None},
               "final_mse": float(np.mean([r["mse"] for r in log[-50:]])),
               "final_kl": float(np.mean([r["kl"] for r in log[-50:]]))}
    return summary, model, {"path": path, "log": log}


def _algorithm1(args, dist):
    from semcom.training.algorithm1 import Algorithm1Config, save_trained, train_algorithm1, write_trajectories

    fields = {"steps_per_epoch": args.steps, "clips_per_batch": args.batch_size, "lr": args.lr, "d": args.d,
              "seed": args.seed, "epochs": args.epochs, "clip_frames": args.clip_frames, "d0": args.d0,
              "alpha": args.alpha, "tau_init": args.tau_init, "tau_mode": args.tau_mode,
              "eta_tau": args.eta_tau, "lambda_init": args.lambda_init, "eta_lambda": args.eta_lambda,
              "encoder": args.encoder, "beta_kl": args.beta_kl, "train_seed": args.train_seed,
              "regimes": tuple(args.regimes) if args.regimes else None, "pool_seeds": args.pool_seeds}
    overrides = {k: v for k, v in fields.items() if v is not None}
    images, data_name = (), "content regimes (seeds from train_seed)"
    if args.images:
        images, data_name = _images(args)
        overrides["source"] = "crops"
    cfg = validated(Algorithm1Config, **overrides)
    init = _load_init(args)
    reference = init
    if cfg.d0 is None and init is None:
        from semcom.models import load_autoencoder

        reference = load_autoencoder()
        if reference.hparams != {"d": cfg.d, "height": cfg.height, "width": cfg.width, "base": cfg.base}:
            raise ConfigError("d0 has no default for a model shaped unlike the shipped one: pass --d0 or --init")
    total = cfg.epochs * cfg.steps_per_epoch
    with progress(total, "algorithm 1", args.json or not dist.is_main) as step:
        result = train_algorithm1(cfg, init=init, images=images, reference=reference, dist=dist,
                                  progress=lambda e, s, r: step(f"epoch {e + 1} D {r['distortion']:.4f} "
                                                                f"tau {r['tau']:.3f} lambda {r['lambda']:.3g}"))
    model = result.export()
    if not dist.is_main:
        return {}, model, {}
    path = save_trained(model, args.output, kind="autoencoder" if cfg.encoder == "autoencoder" else "beta-vae-mean",
                        algorithm="algorithm1", tau=f"{result.tau:.6f}", d0=f"{result.d0:.6g}")
    last = result.history[-1]
    summary = {"data": data_name, "config": cfg.model_dump() | {"init": str(args.init) if args.init else None},
               "final_mse": last["distortion_hard"], "tau": result.tau, "lambda": result.lam, "d0": result.d0,
               "hit_rate": last["hit_rate"], "bits_per_frame": last["bits_per_frame"]}
    extra = {"path": path, "history": result.history}
    if args.out is not None:
        files = write_trajectories(result, args.out, config=summary["config"])
        summary["trajectories"] = {k: str(v) for k, v in files.items()}
    return summary, model, extra


def _photo_split(args) -> tuple[list, tuple[str, ...], str, list]:
    """The learned codecs' data: ``--images`` or the training photos no content regime uses, their names, a
    description, and the validation photos (never trained on)."""
    from semcom.sources.photos import TRAIN_PHOTOS, VALIDATION_PHOTOS, load_photo

    if args.images:
        images, data_name = _images(args)
        return images, (args.images,), data_name, [load_photo(n) for n in VALIDATION_PHOTOS]
    return ([load_photo(n) for n in TRAIN_PHOTOS], TRAIN_PHOTOS,
            f"{len(TRAIN_PHOTOS)} bundled photos no content regime uses", [load_photo(n) for n in VALIDATION_PHOTOS])


def _codec(args, dist):
    """A spatial codec of the zoo (semcom.training.codec): rate-distortion training on photos split by photo."""
    from semcom.sources.photos import VALIDATION_PHOTOS
    from semcom.training.codec import CodecTrainConfig, save_codec, train_codec

    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "seed": args.seed}.items() if v is not None}
    cfg = validated(CodecTrainConfig, **overrides)
    images, names, data_name, validation = _photo_split(args)
    with progress(cfg.steps, "training", args.json or not dist.is_main) as step:
        model, log = train_codec(images, cfg, validation, dist=dist,
                                 progress=lambda s, r: step(f"bpp {r['bpp']:.3f} mse {r['mse']:.4f}"),
                                 checkpoint=lambda m, s, lg: save_codec(m, args.output, cfg, names,
                                                                        VALIDATION_PHOTOS, lg))
    if not dist.is_main:
        return {}, model, {}
    path = save_codec(model, args.output, cfg, names, VALIDATION_PHOTOS, log)
    validation_rows = next((r["validation"] for r in reversed(log) if "validation" in r), None)
    summary = {"data": data_name, "config": cfg.model_dump(),
               "final_mse": float(np.mean([r["mse"] for r in log[-50:]])),
               "final_bpp": float(np.mean([r["bpp"] for r in log[-50:]])), "validation": validation_rows,
               "train_photos": list(names), "validation_photos": list(VALIDATION_PHOTOS)}
    return summary, model, {"path": path, "log": log}


def _codebook(args, dist):
    """The grounded codebook paper's VQ-VAE (semcom.training.vqvae), one ablation variant, on photos split by
    photo."""
    from semcom.sources.photos import VALIDATION_PHOTOS
    from semcom.training.vqvae import VQVAETrainConfig, save_vqvae, train_vqvae

    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "seed": args.seed, "variant": args.variant, "J": args.J, "p": args.p,
                                   "d": args.d}.items() if v is not None}
    if args.J is not None:
        from semcom.quantization.codebook import check_codebook_size

        check_codebook_size(args.J)
    cfg = validated(VQVAETrainConfig, **overrides)
    images, names, data_name, validation = _photo_split(args)
    perceptual = args.vgg16 is not None

    def save(m, _step, lg):
        return save_vqvae(m, args.output, cfg, names, VALIDATION_PHOTOS, lg, perceptual=perceptual)

    with progress(cfg.steps, f"codebook {cfg.variant}", args.json) as step:
        model, log = train_vqvae(images, cfg, validation, vgg16_weights=args.vgg16, dist=dist,
                                 progress=lambda s, r: step(f"mse {r['mse']:.4f} q {r['quantization']:.4f}"),
                                 checkpoint=save)
    path = save(model, cfg.steps, log)
    validation_rec = next((r["validation"] for r in reversed(log) if "validation" in r), None)
    summary = {"data": data_name, "config": cfg.model_dump(), "reconstruction": "mse+ms-ssim+vgg16-gram"
               if perceptual else "mse+ms-ssim (no VGG16 weights given)",
               "final_mse": float(np.mean([r["mse"] for r in log[-50:]])), "validation": validation_rec,
               "train_photos": list(names), "validation_photos": list(VALIDATION_PHOTOS)}
    return summary, model, {"path": path, "log": log}


def _robust(args) -> int:
    """``semcom train --algorithm robust --variant NAME [--steps N] [--dataset SPEC] [--seed S] [--init FILE]
    [-o FILE]``: retrain a shipped model with its recipe (:func:`semcom.robust.zoo.train_variant`); a ``+at``
    variant fine-tunes ``--init`` (default: the shipped plain variant, which fits only mnist5k-shaped data).
    ``-o`` defaults to ``NAME.safetensors`` here; ``-o src/semcom/robust/weights/NAME.safetensors`` replaces the
    shipped file."""
    from semcom.robust.zoo import DATASET, check_variant, save_variant, train_variant

    if args.variant is None:
        raise ConfigError("--algorithm robust needs --variant (masked-vqvae+fim+at, masked-vqvae+at, masked-vqvae, "
                          "jscc+at, jscc, jpeg-classifier+at, jpeg-classifier, masked-vqvae-tasks, "
                          "masked-vqvae-tasks+at)")
    check_variant(args.variant)
    steps = args.steps
    seed = 0 if args.seed is None else args.seed
    output = args.output if str(args.output) != "ae.safetensors" else Path(f"{args.variant}.safetensors")
    log = None if args.json else out_console.print
    init = None
    if args.init is not None:
        from semcom.robust.weights import load_robust

        init = load_robust(args.init)
    model, info = train_variant(args.variant, steps, args.dataset or DATASET, seed, log=log, init=init)
    path, half = save_variant(model, info, output)
    summary = {"algorithm": "robust", "output": str(path), "float16": half} | info
    if args.json:
        print_json(summary)
    else:
        out_console.print(f"{args.variant} on {info['dataset']} ({info['train_seconds']} s) -> {path}; "
                          f"test accuracy (noiseless link) {info['test_accuracy_noiseless']:.4f}")
    return 0
