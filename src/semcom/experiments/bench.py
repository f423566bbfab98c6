"""CPU micro-benchmarks: autoencoder and link throughput, memory retrieval against ``M`` (``semcom bench``).

Everything runs on the CPU, in one process, with the thread count torch
already has (``torch.get_num_threads()`` is reported; only the side-by-side
below changes it, and puts it back).

Throughput (frames per second)
    * ``encode`` / ``decode``: the autoencoder's ``f_theta`` / ``g_phi`` on
      ``frames`` float frames (3, H, W) already in [0, 1] (the uint8
      conversion of :func:`semcom.frames.to_tensor` is not timed), in batches
      of 64 and one frame at a time; ``batching`` gives the ratio
      fps(batch 64) / fps(batch 1).
    * ``link:<rule>``: :meth:`Transmitter.send_latent` followed by
      :meth:`Receiver.receive_latent` per frame, on a synthetic stream of
      unit latents that revisits a few "scenes" (so there are hits and
      misses), with a small memory (``m_max`` = 256). Each timed pass builds
      a fresh transmitter/receiver pair (microseconds) and streams all frames.

Retrieval (seconds per call against the memory size ``M``; docs/scale.md)
    For each ``M`` a :class:`PrototypeMemory` is filled with ``M`` random unit
    vectors by :func:`filled_memory` (:meth:`PrototypeMemory.filled`: one
    ``randn`` + normalise, instead of ``M`` Python-level writes). Every op is
    compared with the *best floor* of its group, measured in the same
    interleaved rounds: the fastest of the products every op has to do at
    least once, for one query ``P @ z`` (the (M, d) layout) and ``z @ PT``
    (the memory's contiguous (d, M) copy), for a batch of 64 ``Q @ P.T`` and
    ``Q @ PT``, all in torch (numpy's own BLAS has a second thread pool that
    fights torch's on a shared machine; docs/scale.md). The one-query ops: the exact scan
    (:meth:`PrototypeMemory.nearest`), ``NearestRule.decide``,
    ``HopfieldRule.decide`` (``top_k=4``) with its readouts cached (a run of
    hits) and after a miss (caches dropped), ``PaperRule.decide``,
    ``HopfieldRule.readout`` (what the receiver computes on a hit) cached and
    after a miss, and, with ``index="approx"``, the inverted file's search and
    ``NearestRule.decide`` through it. The batch ops:
    :meth:`PrototypeMemory.nearest_batch`, ``NearestRule.decide_batch`` and
    :func:`hopfield_retrieve` for 64 queries.

Approximate index (``index``, with ``index="approx"``)
    The index's build seconds (all torch threads), and on ``queries`` queries
    (half near a stored prototype, at cosines spread around ``tau``, half
    random) its recall@1 against the exact scan and the fraction of
    ``nearest`` hit/miss decisions identical to the exact rule's (a hit on a
    different slot counts as different).

Threads (``threads_per_frame``)
    The per-frame loop at 1 and 2 torch threads side by side
    (:func:`semcom.threads.torch_threads` around each timed call, the two
    counts interleaved): the sphere64 memory link, frame to bytes at the
    transmitter (encode + decide) and bytes to frame at the receiver
    (decode), ``hopfield.decide`` at ``M`` = 1000, and (not ``quick``) the
    codec link of every other model asked for. ``ratio`` is fps(2) / fps(1):
    below 1, the second thread slows the loop down (docs/benchmarks.md,
    "Threads").

Start-up (``startup``, :func:`startup_times`)
    Seconds of fresh ``python`` processes (``subprocess``, median of a few
    runs): ``python -c pass``, ``python -c "import torch"``,
    ``semcom --help`` and ``semcom decode`` of a 4-frame sphere64 stream to a
    folder, each also as a ratio to ``python -c pass`` and to
    ``import torch``.

Timing (:func:`time_interleaved`, ``time.perf_counter``): each op is warmed up
once, then called in blocks of ``number`` calls (``number`` chosen so a block
lasts at least 5 ms, quick 2 ms); an op and its floor are measured in
interleaved rounds of blocks, in a shuffled order, so a background load hits
both alike, and the reported time per call is the median over the blocks
(``samples`` in each row; by default as many as fit a time budget). The ratio to the floor is
``seconds / floor_seconds``. ``torch.utils.benchmark.Timer`` is not used
because it pins the thread count to 1 unless told otherwise, and cannot
interleave two statements.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from semcom.config import LinkConfig
from semcom.link import Receiver, Transmitter
from semcom.memory import HopfieldRule, NearestRule, PaperRule, PrototypeMemory, hopfield_retrieve
from semcom.models import SphericalAutoencoder
from semcom.models.weights import load_autoencoder, shipped_weights_path

DEFAULT_SIZES = (10**3, 10**4, 10**5, 10**6)
BATCH = 64
LINK_M_MAX = 256
TOP_K = 4
BETA = 20.0
TAU = 0.9


# ----------------------------------------------------------------------------- timing


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int | None = None, min_block_s: float = 2e-3,
                     budget_s: float = 5.0, min_repeats: int = 3, max_repeats: int = 25,
                     slow_call_s: float = 0.2) -> dict[str, list[float]]:
    """Samples of the seconds per call of each function, measured in interleaved blocks.

    Each function is called once to warm up; that call also sizes its block
    (``number = ceil(min_block_s / t_warm)`` calls per block) and, when it
    took ``slow_call_s`` or more (first-call effects are then negligible), it
    counts as the first sample instead of being thrown away. Then rounds of
    one block of each function, in an order shuffled every round (seeded),
    so that no function always runs right after the same other one (an op
    that follows a multi-threaded one can find the OpenMP workers still
    spinning), until each has ``repeats`` samples.
    ``repeats=None`` takes as many rounds as fit in what is left of
    ``budget_s`` after the warm-up, clamped to ``[min_repeats, max_repeats]``
    (more samples make the median robust to a noisy, shared machine).
    """
    start = time.perf_counter()
    numbers: dict[str, int] = {}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    per_round = 0.0
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        dt = max(time.perf_counter() - t0, 1e-9)
        numbers[name] = max(1, math.ceil(min_block_s / dt))
        per_round += numbers[name] * dt
        if dt >= slow_call_s and numbers[name] == 1:
            samples[name].append(dt)
    if repeats is None:
        left = budget_s - (time.perf_counter() - start)
        repeats = max(min_repeats, min(max_repeats, int(left / per_round)))
    repeats = max(1, repeats)
    order, rng = list(fns), random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            if len(samples[name]) >= repeats:
                continue
            fn, n = fns[name], numbers[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return samples


# ----------------------------------------------------------------------------- fixtures


def random_unit(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random unit vectors (n, d), float32, uniform on the sphere."""
    return F.normalize(torch.randn(n, d, generator=generator), dim=1)


def filled_memory(m: int, d: int, seed: int = 0) -> PrototypeMemory:
    """A full :class:`PrototypeMemory` (size = m_max = ``m``) of random unit prototypes.

    :meth:`PrototypeMemory.filled`: what ``m`` calls to
    :meth:`PrototypeMemory.write` would leave, minus the recency stamps,
    all zero here (irrelevant to retrieval).
    """
    g = torch.Generator().manual_seed(seed)
    return PrototypeMemory.filled(random_unit(m, d, g), m_max=m, full_policy="lru")


def scene_stream(frames: int, d: int, scenes: int = 16, stay: float = 0.9, noise: float = 0.03,
                 seed: int = 0) -> torch.Tensor:
    """Synthetic latents (frames, d): a Markov walk over ``scenes`` unit centres plus small noise.

    With ``noise`` = 0.03 at d = 64 two latents of one scene have cosine ~0.94
    (hits at ``tau`` = 0.9) and latents of different scenes ~0 (misses).
    """
    g = torch.Generator().manual_seed(seed)
    centres = random_unit(scenes, d, g)
    rng = np.random.default_rng(seed)
    idx = np.empty(frames, dtype=np.int64)
    s = 0
    for t in range(frames):
        if t and rng.random() > stay:
            s = int(rng.integers(scenes))
        idx[t] = s
    return F.normalize(centres[torch.from_numpy(idx)] + noise * torch.randn(frames, d, generator=g), dim=1)


def bench_model(d: int = 64) -> tuple[SphericalAutoencoder, str]:
    """The shipped autoencoder if its weights file exists, else a random-init one."""
    if shipped_weights_path().is_file():
        return load_autoencoder(), "shipped"
    with torch.random.fork_rng():  # seeded, without touching the caller's global RNG
        torch.manual_seed(0)
        model = SphericalAutoencoder(d=d)
    return model.eval().requires_grad_(False), "random-init"


# ----------------------------------------------------------------------------- throughput


def _throughput(model: SphericalAutoencoder, d: int, frames: int, repeats: int | None,
                budget_s: float, min_repeats: int, max_repeats: int) -> tuple[list[dict], list[dict]]:
    hp = model.hparams
    g = torch.Generator().manual_seed(1)
    x = torch.rand(frames, 3, hp["height"], hp["width"], generator=g)
    z = random_unit(frames, hp["d"], g)
    enc, dec = model.encoder, model.decoder

    def passes(net: torch.nn.Module, data: torch.Tensor, batch: int) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                for i in range(0, frames, batch):
                    net(data[i: i + batch])
        return run

    fns = {("encode", BATCH): passes(enc, x, BATCH), ("encode", 1): passes(enc, x, 1),
           ("decode", BATCH): passes(dec, z, BATCH), ("decode", 1): passes(dec, z, 1)}

    stream = scene_stream(frames, d)
    hit_rates = {}
    for rule in ("nearest", "hopfield"):
        cfg = LinkConfig(rule=rule, tau=TAU, beta=BETA, m_max=LINK_M_MAX, d=d, top_k=TOP_K)

        def link(cfg: LinkConfig = cfg, rule: str = rule) -> None:
            tx, rx = Transmitter(cfg), Receiver(cfg)
            hits = 0
            for t in range(frames):
                rx.receive_latent(tx.send_latent(stream[t]))
                hits += tx.last.hit
            hit_rates[rule] = hits / frames

        fns[(f"link:{rule}", 1)] = link

    named = {f"{w}|{b}": fn for (w, b), fn in fns.items()}
    samples = time_interleaved(named, repeats, min_block_s=0.0, budget_s=budget_s, min_repeats=min_repeats,
                               max_repeats=max_repeats)
    rows = []
    for (what, batch) in fns:
        ss = samples[f"{what}|{batch}"]
        s = statistics.median(ss)
        row = {"what": what, "batch": batch, "fps": frames / s, "seconds_per_frame": s / frames,
               "samples": len(ss)}
        if what.startswith("link:"):
            row["hit_rate"] = hit_rates[what[5:]]
        rows.append(row)
    fps = {(r["what"], r["batch"]): r["fps"] for r in rows}
    batching = [{"what": w, "batch": BATCH, "fps_batched": fps[(w, BATCH)], "fps_per_frame": fps[(w, 1)],
                 "ratio": fps[(w, BATCH)] / fps[(w, 1)]} for w in ("encode", "decode")]
    return rows, batching


# ----------------------------------------------------------------------------- retrieval


def decision_queries(mem: PrototypeMemory, n: int, seed: int, tau: float = TAU) -> torch.Tensor:
    """``n`` unit queries (n, d): the first half near stored prototypes, at cosines spread over about
    ``[tau - 0.1, tau + 0.08]`` (the hit/miss boundary), the rest uniform on the sphere (misses)."""
    g = torch.Generator().manual_seed(seed)
    half, d = n // 2, mem.d
    near = torch.randint(mem.size, (half,), generator=g)
    # cos(mu, normalize(mu + s e)) ~ 1 / sqrt(1 + s^2 d) for e ~ N(0, I): s * sqrt(d) in [0.2, 0.75]
    spread = (0.2 + 0.55 * torch.rand(half, 1, generator=g)) / math.sqrt(d)
    q = mem.prototypes[near] + spread * torch.randn(half, d, generator=g)
    return F.normalize(torch.cat([q, torch.randn(n - half, d, generator=g)]), dim=1)


def _agreement(mem: PrototypeMemory, queries: torch.Tensor, tau: float = TAU) -> dict:
    """How the approximate index's ``nearest`` decisions compare with the exact scan's on ``queries``."""
    exact_j, exact_s = mem.nearest_batch(queries)
    approx_j = mem.approx_index().search_batch(queries.numpy(), 1)[:, 0]
    approx_s = np.einsum("id,id->i", mem.prototypes[torch.from_numpy(approx_j)].numpy(), queries.numpy())
    exact_hit, approx_hit = exact_s >= tau, approx_s >= tau
    same = (exact_hit == approx_hit) & (~exact_hit | (exact_j == approx_j))
    return {"queries": len(queries), "exact_hit_rate": float(exact_hit.mean()),
            "decision_agreement": float(same.mean()), "hit_miss_agreement": float((exact_hit == approx_hit).mean()),
            "recall_at_1": float((exact_j == approx_j).mean()),
            "recall_at_1_on_hits": float((exact_j == approx_j)[exact_hit].mean()) if exact_hit.any() else None}


def _retrieval(m: int, d: int, repeats: int | None, min_block_s: float, budget_s: float, min_repeats: int,
               max_repeats: int, seed: int, index: str = "exact",
               queries: int = 1000) -> tuple[list[dict], dict | None]:
    import copy

    mem = filled_memory(m, d, seed)
    p, pt_np = mem.prototypes, mem.transposed
    pt = torch.from_numpy(pt_np)
    g = torch.Generator().manual_seed(seed + 1)
    j = int(torch.randint(m, (1,), generator=g))
    # a query near a stored prototype (a plausible hit), and 64 random queries for the batch
    z = F.normalize(p[j] + 0.05 * torch.randn(d, generator=g), dim=0)
    q = random_unit(BATCH, d, g)
    z_np, zq = z.numpy(), z[None]
    nearest, hopfield, paper = (R(TAU, BETA, TOP_K) for R in (NearestRule, HopfieldRule, PaperRule))

    cold = copy.copy(mem)  # the same arrays with caches of its own, emptied before every call
    cold._derived = {}

    def after_miss(fn: Callable[[PrototypeMemory], object]) -> Callable[[], object]:
        def run() -> object:
            cold.forget_derived()  # what a write does to the caches
            return fn(cold)
        return run

    single = {
        "floor: P @ z (torch)": lambda: p @ z,
        "floor: z @ PT (torch)": lambda: zq @ pt,
        "exact: memory.nearest": lambda: mem.nearest(z),
        "nearest.decide": lambda: nearest.decide(z, mem),
        f"hopfield.decide(top_k={TOP_K})": lambda: hopfield.decide(z, mem),
        f"hopfield.decide(top_k={TOP_K}), after a miss": after_miss(lambda m: hopfield.decide(z, m)),
        "paper.decide": lambda: paper.decide(z, mem),
        "hopfield.readout": lambda: hopfield.readout(j, mem),
        "hopfield.readout, after a miss": after_miss(lambda m: hopfield.readout(j, m)),
    }
    approx = None
    if index == "approx":
        t0 = time.perf_counter()
        ann = mem.approx_index(threads=torch.get_num_threads())
        build_s = time.perf_counter() - t0
        from semcom.memory.index import library

        approx = {"M": m, "d": d, "library": library(), "nlist": ann.nlist, "nprobe": ann.nprobe,
                  "build_seconds": build_s,
                  "build_threads": torch.get_num_threads(),
                  **_agreement(mem, decision_queries(mem, queries, seed + 2))}
        amem = copy.copy(mem)  # the same arrays and index, searched through the index
        amem.index = "approx"
        single["approx: index search (1 query)"] = lambda: ann.search(z_np, 1)
        single["approx: nearest.decide"] = lambda: nearest.decide(z, amem)
    batch = {
        "floor: Q @ P.T (torch)": lambda: q @ p.T,
        "floor: Q @ PT (torch)": lambda: q @ pt,
        f"exact: memory.nearest_batch(B={BATCH})": lambda: mem.nearest_batch(q),
        f"nearest.decide_batch(B={BATCH})": lambda: nearest.decide_batch(q, mem),
        f"hopfield_retrieve(B={BATCH})": lambda: hopfield_retrieve(q, p, BETA),
    }
    rows = []
    for group, fns in (("one query", single), (f"batch of {BATCH}", batch)):
        samples = time_interleaved(fns, repeats, min_block_s=min_block_s, budget_s=budget_s / 2,
                                   min_repeats=min_repeats, max_repeats=max_repeats)
        seconds = {op: statistics.median(ss) for op, ss in samples.items()}
        floors = {op: s for op, s in seconds.items() if op.startswith("floor")}
        best_op = min(floors, key=floors.get)
        for op, s in seconds.items():
            rows.append({"M": m, "d": d, "group": group, "op": op, "seconds": s, "floor_seconds": floors[best_op],
                         "ratio_to_floor": s / floors[best_op], "floor": best_op.removeprefix("floor: "),
                         "samples": len(samples[op])})
        if approx is not None and group == "one query":
            s = seconds["approx: nearest.decide"]
            approx.update(seconds_per_query=s, ratio_to_floor=s / floors[best_op],
                          search_seconds=seconds["approx: index search (1 query)"])
    return rows, approx


# ----------------------------------------------------------------------------- entry points


def _link_loop(name: str, quality: int | None, clip: np.ndarray) -> tuple[Callable, Callable]:
    """Model ``name``'s whole link over ``clip``, one frame at a time: ``(frame -> bytes, bytes -> frame)``,
    the second decoding what the first sent once (the sphere64 memory link, or the codec link of a spatial
    model at ``quality`` with B-frames, as ``semcom encode`` codes a file)."""
    from semcom.config import DEFAULT_BFRAMES
    from semcom.models.zoo import check_quality, entry, load_model
    from semcom.schemes.codec_link import CodecLinkConfig, decode_stream, encode_clip

    model = load_model(name)
    if entry(name).kind == "sphere":
        def enc() -> list[bytes]:
            tx = Transmitter(LinkConfig(tau=0.98), model.encoder)
            return [tx.send(f) for f in clip]

        packets = enc()

        def dec() -> None:
            rx = Receiver(LinkConfig(tau=0.98), model.decoder)
            for pk in packets:
                rx.receive(pk)
        return enc, dec
    cfg = CodecLinkConfig(model=name, quality=check_quality(name, quality), bframes=DEFAULT_BFRAMES)  # as encode
    data = encode_clip(clip, cfg, model)[0]
    return (lambda: encode_clip(clip, cfg, model)[0]), (lambda: decode_stream(data, model))


def _zoo_throughput(models: Sequence[str], quality: int | None, frames: int, budget_s: float,
                    min_repeats: int, max_repeats: int) -> list[dict]:
    """Frames per second of every zoo model, one 64x64 frame at a time through its whole link (frame to
    bytes at the transmitter, bytes to frame at the receiver), as ratios to ``sphere64`` in the same run."""
    from semcom.sources import regime_clip

    clip = regime_clip("cam_shake", frames=frames)
    fns, names = {}, list(dict.fromkeys(["sphere64", *models]))
    for name in names:
        enc, dec = _link_loop(name, quality, clip)
        fns[f"{name}|encode"], fns[f"{name}|decode"] = enc, dec
    samples = time_interleaved(fns, None, min_block_s=0.0, budget_s=budget_s, min_repeats=min_repeats,
                               max_repeats=max_repeats)
    fps = {k: frames / statistics.median(v) for k, v in samples.items()}
    return [{"model": n, "what": w, "fps": fps[f"{n}|{w}"], "samples": len(samples[f"{n}|{w}"]),
             "ratio_to_sphere64": fps[f"{n}|{w}"] / fps[f"sphere64|{w}"]} for n in names for w in ("encode", "decode")]


def _build_loops(loops: dict, models: Sequence[str], quality: int | None, clip: np.ndarray) -> None:
    """The sphere64 link and the codec link of each of ``models``, frame -> bytes and bytes -> frame, into
    ``loops`` (name -> (function, frames per call))."""
    for name in dict.fromkeys(["sphere64", *models]):
        enc, dec = _link_loop(name, quality, clip)
        loops[f"{name} link: frame -> bytes"] = (enc, len(clip))
        loops[f"{name} link: bytes -> frame"] = (dec, len(clip))


def _thread_loops(models: Sequence[str], quality: int | None, frames: int, counts: Sequence[int], budget_s: float,
                  min_repeats: int, max_repeats: int) -> list[dict]:
    """Frames per second of the per-frame loops at each thread count in ``counts``, side by side (module
    docstring, "Threads")."""
    from semcom.sources import regime_clip
    from semcom.threads import torch_threads

    clip = regime_clip("cam_shake", frames=frames)
    loops: dict[str, tuple[Callable[[], object], int]] = {}
    with torch_threads(1, exact=True):  # the set-up (a first stream per model) on the faster count
        _build_loops(loops, models, quality, clip)
    mem, rule = filled_memory(1000, 64), HopfieldRule(TAU, BETA, TOP_K)
    z = random_unit(1, 64, torch.Generator().manual_seed(2))[0]
    loops[f"hopfield.decide(top_k={TOP_K}), M=1000"] = (lambda: rule.decide(z, mem), 1)

    def at(n: int, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with torch_threads(n, exact=True):
                fn()
        return run

    fns = {f"{what}|{n}": at(n, fn) for what, (fn, _) in loops.items() for n in counts}
    samples = time_interleaved(fns, None, min_block_s=0.0, budget_s=budget_s, min_repeats=min_repeats,
                               max_repeats=max_repeats)
    rows = []
    for what, (_, per_call) in loops.items():
        fps = {n: per_call / statistics.median(samples[f"{what}|{n}"]) for n in counts}
        rows.append({"what": what, "frames": per_call, **{f"fps_{n}": fps[n] for n in counts},
                     "ratio": fps[counts[-1]] / fps[counts[0]],
                     "samples": min(len(samples[f"{what}|{n}"]) for n in counts)})
    return rows


def startup_times(repeats: int = 3) -> dict:
    """Seconds to start fresh processes (median of ``repeats`` runs each): ``python -c pass``, ``import torch``,
    ``semcom --help`` and ``semcom decode`` of a small sphere64 stream, with their ratios (module docstring)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from semcom.link.wire import pack_stream
    from semcom.models.weights import fingerprint
    from semcom.sources import regime_clip

    model, weights = bench_model()
    tx = Transmitter(LinkConfig(tau=0.98), model.encoder, fingerprint(model))
    writer = tx.stream_writer()
    clip = regime_clip("cam_shake", frames=4)
    for frame in clip:
        tx.send_to_stream(tx.encode(frame)[0], writer)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "clip.semcom"
        stream.write_bytes(pack_stream(tx.header(len(clip)), writer.getvalue()))
        commands = {"python -c pass": [py, "-c", "pass"], "python -c 'import torch'": [py, "-c", "import torch"],
                    "semcom --help": [py, "-m", "semcom.cli", "--help"],
                    "semcom decode (4 frames)": [py, "-m", "semcom.cli", "decode", str(stream), "-o",
                                                 str(Path(tmp) / "frames")]}
        if weights != "shipped":  # the stream names weights the command would not find
            del commands["semcom decode (4 frames)"]
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(max(1, repeats)):
            for name, cmd in commands.items():  # interleaved, so a background load hits all alike
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - t0)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    base, torch_s = seconds["python -c pass"], seconds["python -c 'import torch'"]
    return {"repeats": max(1, repeats), "rows": [
        {"what": k, "seconds": s, "beyond_python_s": s - base, "ratio_to_python": s / base,
         "ratio_to_import_torch": s / torch_s} for k, s in seconds.items()]}


def run_bench(sizes: Sequence[int] = DEFAULT_SIZES, d: int = 64, frames: int = 256, repeats: int | None = None,
              quick: bool = False, seed: int = 0, models: Sequence[str] = ("hyperprior",),
              quality: int | None = None, thread_counts: Sequence[int] = (1, 2), startup: bool = True,
              index: str = "approx", retrieval_only: bool = False, queries: int | None = None) -> dict:
    """Run the CPU benchmark; returns a JSON-serialisable dict (see the module docstring).

    ``index="approx"`` also builds and times the approximate index at every
    memory size (``queries`` decision queries, default 1000, quick 200);
    ``retrieval_only`` skips everything but retrieval (``semcom bench --m``).

    ``repeats`` is the number of timed blocks (samples) per op; the default,
    None, takes as many as fit a time budget (per memory size: 20 s, quick
    2.5 s; throughput: 40 s, quick 3 s), between 3 and 25 (quick: 1 and 9),
    so fast ops get many samples and the slowest a few (each row says how
    many). ``quick`` also caps the throughput stream at 64 frames and
    shortens the blocks; the whole quick run takes about 20 s on 2 cores, the
    full run a couple of minutes.
    """
    if repeats is not None and repeats < 1:
        raise ValueError("repeats must be >= 1")
    if frames < 1 or d < 1 or any(int(m) < 1 for m in sizes):
        raise ValueError("frames, d and every memory size must be >= 1")
    if quick:
        frames = min(frames, 64)
    # quick: short blocks, small budgets, and a single sample allowed for the slowest ops
    min_block_s, min_repeats, max_repeats = (2e-3, 1, 9) if quick else (5e-3, 3, 25)
    if index not in ("exact", "approx"):
        raise ValueError(f"index must be 'exact' or 'approx', not {index!r}")
    model, weights = bench_model(d)
    throughput, batching, zoo, threads = [], [], [], []
    if not retrieval_only:
        throughput, batching = _throughput(model, d, frames, repeats, budget_s=3.0 if quick else 40.0,
                                           min_repeats=min_repeats, max_repeats=max_repeats)
        zoo = _zoo_throughput(models, quality, 16 if quick else 48, budget_s=3.0 if quick else 20.0,
                              min_repeats=min_repeats, max_repeats=max_repeats)
        threads = _thread_loops([] if quick else models, quality, 8 if quick else 16, tuple(thread_counts),
                                budget_s=3.0 if quick else 20.0, min_repeats=min_repeats, max_repeats=max_repeats)
    retrieval: list[dict] = []
    approx: list[dict] = []
    for m in sizes:
        budget_s = 2.5 if quick else (120.0 if retrieval_only else 20.0)
        rows, graph = _retrieval(int(m), d, repeats, min_block_s, budget_s=budget_s,
                                 min_repeats=min_repeats, max_repeats=max_repeats, seed=seed, index=index,
                                 queries=queries or (200 if quick else 1000))
        retrieval += rows
        approx += [graph] if graph else []
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "weights": weights,
        "quick": quick,
        "repeats": "auto" if repeats is None else repeats,
        "frames": frames,
        "throughput": throughput,
        "batching": batching,
        "models": zoo,
        "threads_per_frame": threads,
        "startup": startup_times(1 if quick else 5) if startup and not retrieval_only else None,
        "retrieval": retrieval,
        "index": approx,
    }


def _fmt_s(s: float) -> str:
    if s < 0.99995e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 0.999995:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def format_bench(result: dict) -> list:
    """Rich tables for :func:`run_bench`'s result: throughput, batching, retrieval."""
    from rich.markup import escape
    from rich.table import Table

    head = f"{result['device']}, {result['threads']} threads, weights {result['weights']}"
    t1 = Table(title=f"Throughput ({head})")
    for c in ("what", "batch", "fps", "per frame", "hit rate", "n"):
        t1.add_column(c, justify="left" if c == "what" else "right")
    for r in result["throughput"]:
        hr = r.get("hit_rate")
        t1.add_row(escape(r["what"]), str(r["batch"]), f"{r['fps']:,.0f}", _fmt_s(r["seconds_per_frame"]),
                   "" if hr is None else f"{hr:.2f}", str(r.get("samples", "")))

    t2 = Table(title=f"Batching speed-up (fps batch {BATCH} / fps batch 1)")
    for c in ("what", "fps batched", "fps per frame", "ratio"):
        t2.add_column(c, justify="left" if c == "what" else "right")
    for r in result.get("batching", []):
        t2.add_row(r["what"], f"{r['fps_batched']:,.0f}", f"{r['fps_per_frame']:,.0f}", f"{r['ratio']:.1f}x")

    t4 = Table(title="Models of the zoo, one frame at a time through the whole link (ratio to sphere64)")
    for c in ("model", "what", "fps", "ratio", "n"):
        t4.add_column(c, justify="left" if c in ("model", "what") else "right")
    for r in result.get("models", []):
        t4.add_row(r["model"], r["what"], f"{r['fps']:,.0f}", f"{r['ratio_to_sphere64']:.3f}x", str(r["samples"]))

    t3 = Table(title=f"Retrieval vs memory size (median per call; ratio to the best floor of the group, {head})")
    for c in ("M", "d", "op", "time", "best floor", "floor op", "ratio", "n"):
        t3.add_column(c, justify="left" if c in ("op", "floor op") else "right")
    prev = None
    for r in result["retrieval"]:
        key = (r["M"], r.get("group"))
        if prev is not None and key != prev:
            t3.add_section()
        prev = key
        t3.add_row(f"{r['M']:,}", str(r["d"]), escape(r["op"]), _fmt_s(r["seconds"]), _fmt_s(r["floor_seconds"]),
                   escape(r.get("floor", "")), f"{r['ratio_to_floor']:.2f}x", str(r.get("samples", "")))
    t7 = None
    if result.get("index"):
        t7 = Table(title="Approximate index against the exact scan (nearest rule, tau = 0.9)")
        for c in ("M", "library", "build", "per query", "ratio", "decisions identical", "hit/miss identical",
                  "recall@1", "recall@1 on hits", "exact hit rate", "queries"):
            t7.add_column(c, justify="left" if c == "library" else "right")
        for r in result["index"]:
            rh = r["recall_at_1_on_hits"]
            t7.add_row(f"{r['M']:,}", f"{r['library']} (nlist={r['nlist']}, nprobe={r['nprobe']})",
                       f"{r['build_seconds']:.1f} s ({r['build_threads']} thr)", _fmt_s(r["seconds_per_query"]),
                       f"{r['ratio_to_floor']:.3f}x", f"{r['decision_agreement']:.2%}",
                       f"{r['hit_miss_agreement']:.2%}",
                       f"{r['recall_at_1']:.2%}", "" if rh is None else f"{rh:.2%}", f"{r['exact_hit_rate']:.2f}",
                       str(r["queries"]))
    tables = [t for t in (t1, t2, t4) if t.row_count]
    rows = result.get("threads_per_frame") or []
    if rows:
        counts = [int(k[4:]) for k in rows[0] if k.startswith("fps_")]
        t5 = Table(title=f"The per-frame loop at {' and '.join(map(str, counts))} torch threads "
                         f"(fps; ratio = fps at {counts[-1]} / fps at {counts[0]})")
        for c in ("what", *(f"{n} thread{'s' * (n > 1)}" for n in counts), "ratio", "n"):
            t5.add_column(c, justify="left" if c == "what" else "right")
        for r in rows:
            t5.add_row(escape(r["what"]), *(f"{r[f'fps_{n}']:,.0f}" for n in counts), f"{r['ratio']:.2f}x",
                       str(r["samples"]))
        tables.append(t5)
    if result.get("startup"):
        t6 = Table(title=f"Start-up of a fresh process (median of {result['startup']['repeats']})")
        for c in ("command", "seconds", "beyond python", "/ python -c pass", "/ import torch"):
            t6.add_column(c, justify="left" if c == "command" else "right")
        for r in result["startup"]["rows"]:
            t6.add_row(escape(r["what"]), f"{r['seconds']:.3f}", f"{r['beyond_python_s']:.3f}",
                       f"{r['ratio_to_python']:.1f}x", f"{r['ratio_to_import_torch']:.2f}x")
        tables.append(t6)
    return [*tables, t3, *([t7] if t7 is not None else [])]
