"""Fuzz campaign against the decoders of stream versions 2 (the codec link) and 3 (the codebook scheme), CRCs
resealed.

    python benchmarks/fuzz_codec_link.py --n 2000 [--target codec|codebook|tokens] [--seed 0] [--timeout 20]

Seed inputs: ``codec``, valid streams of three regimes at qualities 1, 4 and 8 (memory on, off, a tiny
memory); ``codebook``, valid version-3 streams of three regimes from two of the four variants; ``tokens``,
valid version-4 streams (the memory link over the codebook's tokens) at three tau and memory sizes.
Each input gets one to four random edits (a byte set, a bit flipped, a run of bytes copied from another
seed, a truncation or an extension), then both CRCs recomputed, so that it reaches the range decoder. It
is decoded as ``semcom decode`` does (:func:`semcom.schemes.codec_link.decode_stream`, or
:meth:`semcom.schemes.codebook.CodebookReceiver.decode` with the variant the header names) and counted as
``acceptances`` (frames came back, of the declared number and shape), ``rejections`` (a SemcomError),
``crashes`` (any other exception) or ``hangs`` (no answer within ``--timeout`` seconds). Counts print as
JSON; every crashing or hanging input is written to ``--corpus``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import signal
import time
from pathlib import Path

import numpy as np


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


def reseal(data: bytes, target: str = "codec") -> bytes:
    """Recompute the header's and the payload's CRC-32 (as anyone crafting a stream would)."""
    from semcom.link.fuzzing import reseal_framed

    if target == "codec":
        from semcom.schemes.codec_link import HEADER_SIZE
    elif target == "codebook":
        from semcom.schemes.codebook import HEADER_SIZE
    else:
        from semcom.schemes.token_link import HEADER_SIZE
    return reseal_framed(data, HEADER_SIZE)


def mutate(data: bytes, rng: np.random.Generator, other: bytes, target: str = "codec") -> bytes:
    x = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(5))
        pos = int(rng.integers(len(x))) if x else 0
        if op == 0 and x:
            x[pos] = int(rng.integers(256))
        elif op == 1 and x:
            x[pos] ^= 1 << int(rng.integers(8))
        elif op == 2:
            a = int(rng.integers(len(other)))
            n = int(rng.integers(1, 32))
            x[pos : pos + n] = other[a : a + n]
        elif op == 3:
            del x[pos:]
        else:
            x += bytes(rng.integers(0, 256, int(rng.integers(1, 16))).astype(np.uint8))
    return reseal(bytes(x), target)


def codec_target():
    """Seed streams of the codec link and its decoder."""
    from semcom.models.zoo import load_model
    from semcom.schemes.codec_link import CodecLinkConfig, decode_stream, encode_clip
    from semcom.sources import regime_clip

    model = load_model("hyperprior")
    seeds = []
    # high_texture q8: motion frames, mostly refined; the B-frame streams: groups of B-frames (q5, q7)
    for regime, q, inter, m_max, bframes in (("static", 1, True, 64, 0), ("cam_shake", 4, True, 3, 0),
                                             ("scene_change", 8, False, 8, 0), ("high_texture", 8, True, 8, 0),
                                             ("high_texture", 5, True, 8, 3), ("low_motion", 7, True, 8, 3)):
        config = CodecLinkConfig(quality=q, inter=inter, m_max=m_max, bframes=bframes)
        seeds.append(encode_clip(regime_clip(regime, frames=12), config, model)[0])
    return seeds, lambda x: decode_stream(x, model)[0]


def codebook_target():
    """Seed streams of the codebook scheme; the decoder loads the variant the header names, as ``decode`` does."""
    from semcom.schemes.codebook import CodebookReceiver, CodebookTransmitter, load_variant, parse_header
    from semcom.sources import regime_clip

    models = {v: load_variant(v) for v in ("vqvae", "proposed")}
    seeds = [CodebookTransmitter(models[v]).encode(regime_clip(r, frames=n))
             for v, r, n in (("vqvae", "static", 3), ("proposed", "cam_shake", 8), ("proposed", "scene_change", 1))]

    def decode(x: bytes):
        model = models.get(parse_header(x).variant) or load_variant(parse_header(x).variant)
        return CodebookReceiver(model).decode(x)

    return seeds, decode


def tokens_target():
    """Seed streams of the memory link over the codebook's tokens (version 4) and its decoder."""
    from semcom.schemes.codebook import load_variant
    from semcom.schemes.token_link import TokenLinkConfig, decode_stream, encode_clip
    from semcom.sources import regime_clip

    model = load_variant("proposed")
    seeds = [encode_clip(regime_clip(r, frames=n), TokenLinkConfig(tau=tau, m_max=m), model)[0]
             for r, n, tau, m in (("static", 12, 1.0, 64), ("cam_shake", 10, 0.75, 3), ("scene_change", 6, 0.5, 8))]
    return seeds, lambda x: decode_stream(x, model)[0]


TARGETS = {"codec": codec_target, "codebook": codebook_target, "tokens": tokens_target}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--target", choices=tuple(TARGETS), default="codec")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=20)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "corpus")
    args = ap.parse_args(argv)

    import torch

    from semcom.errors import SemcomError

    torch.set_num_threads(1)
    seeds, decode = TARGETS[args.target]()
    rng = np.random.default_rng(args.seed)
    counts, kinds = collections.Counter(), collections.Counter()
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    for i in range(args.n):
        x = mutate(seeds[i % len(seeds)], rng, seeds[int(rng.integers(len(seeds)))], args.target)
        signal.alarm(args.timeout)
        try:
            frames = decode(x)
            assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
            kind = "acceptances"
        except SemcomError:
            kind = "rejections"
        except Hang:
            kind = "hangs"
        except Exception as exc:  # noqa: BLE001 - a crash is what we count
            kind = "crashes"
            kinds[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
        finally:
            signal.alarm(0)
        counts[kind] += 1
        if kind in ("crashes", "hangs"):
            args.corpus.mkdir(parents=True, exist_ok=True)
            version = {"codec": "v2", "codebook": "v3", "tokens": "v4"}[args.target]
            (args.corpus / f"{version}-{kind}-{hashlib.sha256(x).hexdigest()[:12]}.bin").write_bytes(x)
    print(json.dumps({"target": args.target, "inputs": args.n, "seconds": round(time.perf_counter() - start, 1),
                      **{k: counts.get(k, 0) for k in ("crashes", "hangs", "rejections", "acceptances")},
                      "crash_kinds": dict(kinds)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
