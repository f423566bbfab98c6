"""Fuzz campaign against the version-1 decoders (streams and session files, CRCs resealed).

    python benchmarks/fuzz_campaign.py --n 10000 [--seed 0] [--timeout 10] [--corpus tests/corpus]

Each input is a valid stream or session file (fixed and adaptive coding, residual mode, a tiny
memory; sessions with cues, bit errors and a corruption) with one to three random edits, its header,
session-block and payload CRCs recomputed (:mod:`semcom.link.fuzzing`). It is decoded the way
``semcom decode`` does (header against the model, frames, replay, the decoder) and counted as:

* ``acceptances``: frames came back;
* ``rejections``: a :class:`semcom.errors.SemcomError`;
* ``crashes``: any other exception;
* ``hangs``: no answer within ``--timeout`` seconds (``signal.alarm``);
* ``bound_violations``: more frames decoded than :func:`semcom.link.fuzzing.work_bound` allows.

Every input that crashed or hung is written to ``--corpus`` (``tests/test_fuzz_streams.py`` replays
that folder). The counts are printed as JSON.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the decoder swallows it."""


def _alarm(signum, frame):
    raise Hang()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="inputs to try (default 10^4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=10, help="seconds per input before it counts as a hang")
    ap.add_argument("--frames", type=int, default=24, help="frames of each seed stream")
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "corpus")
    args = ap.parse_args(argv)

    import torch

    from semcom.link.fuzzing import decode_v1, mutate, seed_inputs, work_bound
    from semcom.models import fingerprint, load_autoencoder

    torch.set_num_threads(1)
    model = load_autoencoder()
    wid = fingerprint(model)
    seeds = list(seed_inputs(model, args.frames).items())
    rng = np.random.default_rng(args.seed)
    counts = collections.Counter()
    per_seed = {name: collections.Counter() for name, _ in seeds}
    crash_kinds = collections.Counter()
    saved = []
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    for i in range(args.n):
        name, data = seeds[i % len(seeds)]
        other = seeds[int(rng.integers(len(seeds)))][1]
        x = mutate(data, rng, other)
        counter = [0]
        kind = None
        signal.alarm(args.timeout)
        try:
            out = decode_v1(x, model, wid, counter)
            kind = "acceptances" if out.error is None else "rejections"
        except Hang:
            kind = "hangs"
        except Exception as exc:  # noqa: BLE001 - a crash is what we count
            kind = "crashes"
            crash_kinds[f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"] += 1
        finally:
            signal.alarm(0)
        if counter[0] > work_bound(x):
            counts["bound_violations"] += 1
        counts[kind] += 1
        per_seed[name][kind] += 1
        if kind in ("crashes", "hangs"):
            args.corpus.mkdir(parents=True, exist_ok=True)
            prefix = "crash" if kind == "crashes" else "hang"
            path = args.corpus / f"{prefix}-{name}-{hashlib.sha1(x).hexdigest()[:12]}.bin"
            path.write_bytes(x)
            saved.append(str(path))
    seconds = time.perf_counter() - start
    report = {"inputs": args.n, "seed": args.seed, "timeout_s": args.timeout,
              **{k: counts.get(k, 0) for k in ("crashes", "hangs", "rejections", "acceptances", "bound_violations")},
              "seconds": round(seconds, 1), "inputs_per_second": round(args.n / seconds, 1),
              "per_seed": {k: dict(v) for k, v in per_seed.items()}, "crash_kinds": dict(crash_kinds),
              "saved_to_corpus": saved}
    print(json.dumps(report, indent=2))
    return 1 if counts["crashes"] or counts["hangs"] or counts["bound_violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
