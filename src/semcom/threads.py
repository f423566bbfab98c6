"""Torch thread counts, chosen for the size of the work rather than inherited (docs/benchmarks.md, "Threads").

torch starts with one intra-op thread per core. For the per-frame paths (one 64x64 frame through the encoder,
a decision rule, the entropy coder, the decoder) the ops are so small that extra threads only add
synchronisation, and on a machine shared with other jobs the idle OpenMP workers spin against them: measured on
the 2-core machine, every per-frame path ran 2-35x slower with 2 threads than with 1. Batches of a few hundred
frames or more gain from the extra cores (the encoder on 512 frames: 1.5x faster with 2 threads), smaller ones
do not (120 frames: 2.2x slower). The rule:

* :func:`frame_threads`: 1 thread for per-frame work (the memory link, the codec link, decide, decode loops);
* :func:`batch_threads`: 1 thread below :data:`BATCH_MIN_FRAMES` frames of 64x64 (scaled by area), the count
  torch started with (:func:`default_threads`) from there on.

``--threads N`` (semcom.commands._common.add_threads_arg) pins the count for the whole command
(:func:`pinned`): both rules and every :func:`torch_threads` block inside it then use N. The thread count never
changes the bytes of a stream (tested in tests/test_threads_imports.py for sphere64 and hyperprior). Training
keeps torch's own count.

torch is imported lazily, so that ``semcom --help`` does not pay for it.
"""

from __future__ import annotations

from contextlib import contextmanager

#: Threads for per-frame work: one (measured fastest for single 64x64 frames, docs/benchmarks.md).
FRAME_THREADS = 1

#: Frames of 64x64 from which a batch gets more than one thread (measured: 120 frames were faster on 1 thread,
#: 512 faster on 2).
BATCH_MIN_FRAMES = 256

_default: int | None = None
_pinned: int | None = None


def default_threads() -> int:
    """The thread count torch started with in this process (one per core unless OMP_NUM_THREADS says otherwise),
    recorded the first time any function of this module asks for it."""
    global _default
    if _default is None:
        import torch

        _default = torch.get_num_threads()
    return _default


def frame_threads(override: int | None = None) -> int:
    """Threads for per-frame work: ``override`` when given (``--threads``), else :data:`FRAME_THREADS`."""
    default_threads()  # record torch's own count before anything changes it
    if override is not None:
        return override
    return _pinned if _pinned is not None else FRAME_THREADS


def batch_threads(frames: int, height: int = 64, width: int = 64, override: int | None = None) -> int:
    """Threads for a batch of ``frames`` frames of ``height`` x ``width``: ``override`` when given, else one thread
    below :data:`BATCH_MIN_FRAMES` 64x64 frames' worth of pixels and torch's own count from there on."""
    if override is not None:
        return override
    if _pinned is not None:
        return _pinned
    big = frames * height * width >= BATCH_MIN_FRAMES * 64 * 64
    return default_threads() if big else 1


@contextmanager
def pinned(n: int | None):
    """``--threads N``: the block runs on ``n`` torch threads, and every rule and :func:`torch_threads` inside it
    uses ``n`` too; ``None`` changes nothing. The previous count and pin come back afterwards."""
    global _pinned
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads must be >= 1, not {n}")
    before = _pinned
    _pinned = n
    try:
        with torch_threads(n):
            yield
    finally:
        _pinned = before


@contextmanager
def torch_threads(n: int, exact: bool = False):
    """Run the block with ``n`` torch threads (the pinned count instead, inside :func:`pinned`, unless ``exact``:
    a benchmark comparing counts), then restore the previous count.

    The per-frame Sionna blocks are small; on the 2-core machine two threads made them 3-6x slower than
    one (measured: 10 ms vs 63 ms per miss packet over 16-QAM LDPC)."""
    import torch

    default_threads()
    if _pinned is not None and not exact:
        n = _pinned
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def frame_work(override: int | None = None):
    """``with frame_work(args.threads):`` the per-frame block on :func:`frame_threads` threads."""
    with torch_threads(frame_threads(override)):
        yield


@contextmanager
def batch_work(frames: int, height: int = 64, width: int = 64, override: int | None = None):
    """``with batch_work(len(frames), h, w, args.threads):`` a batched block on :func:`batch_threads` threads."""
    with torch_threads(batch_threads(frames, height, width, override)):
        yield
