"""Sweeps cell by cell: in this process, on a local Dask cluster (``--workers N``) or on an existing one
(``--scheduler ADDRESS``), with the same numbers wherever a cell runs (docs/scale.md, "Sweeps on Dask").

A sweep is a list of *cells* (hashable keys such as ``(scenario, rule, tau)``) and one function
``fn(context, cell, seed)`` of its config-and-data ``context``, the cell and the cell's seed. Cells are
independent: nothing flows from one to the next, so they can run anywhere, in any order. Each gets its own seed
:func:`cell_seed` ``(run seed, cell)`` (numpy's ``SeedSequence``, with the cell's key hashed into its spawn key),
and runs on one torch thread (:func:`semcom.threads.torch_threads`, exact), so that a cell's numbers depend only
on (context, cell, seed): a serial run and a run on any number of workers give bit-identical results.

:class:`Serial` runs the cells in order in this process; :class:`DaskSweep` submits them to a
``distributed.Client`` (the context is scattered to every worker once, not pickled with each cell), advances the
progress bar as each one finishes (``as_completed``) and returns the results in cell order. :func:`sweep_strategy`
opens the one a command asked for. dask and distributed are imported only there.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from semcom.errors import ConfigError

Progress = Callable[[str], None] | None
CellFn = Callable[[Any, Hashable, int], Any]

#: Seconds ``--scheduler ADDRESS`` waits for the scheduler before it is an error.
SCHEDULER_TIMEOUT_S = 10.0

#: Dask settings of the local cluster's workers. Measured on the 2-core machine (one hopfield-fig3 cell), a
#: default Dask worker spent 1.5-2x the CPU of this process on the same cell: its statistical profiler samples
#: the running thread every 10 ms, and the nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` (which also freezes glibc's
#: adaptive mmap threshold) made every large torch buffer a fresh mmap: 45,000 page faults per cell against none
#: here. Profiler off, freed memory kept up to 256 MiB and buffers below 32 MiB taken from the heap: no page
#: faults after the first cell, the same CPU time per cell as in this process.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False,
                 "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 1 << 28,
                 "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 1 << 25}


def cell_seed(seed: int, cell: Hashable) -> int:
    """The seed of ``cell`` in a run of seed ``seed``: a 63-bit integer from numpy's
    ``SeedSequence(entropy=seed, spawn_key=blake2b(repr(cell)))``, the same in every process and on every machine
    (unlike ``hash()``, which Python salts per process). Distinct cells get independent streams."""
    import numpy as np

    digest = hashlib.blake2b(repr(cell).encode(), digest_size=16).digest()
    spawn_key = tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))
    state = np.random.SeedSequence(int(seed) % 2**64, spawn_key=spawn_key).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) >> 1)


def cell_label(cell: Hashable) -> str:
    """How a cell shows on the progress bar: ``a/b/c`` for a tuple key."""
    return "/".join(str(c) for c in cell) if isinstance(cell, tuple) else str(cell)


def run_cell(fn: CellFn, context, cell: Hashable, seed: int):
    """One cell, on one torch thread whatever ``--threads`` says, so that its floats do not depend on where it
    runs (a matrix product summed over 2 threads may differ in the last bit from one summed over 1)."""
    from semcom.threads import torch_threads

    with torch_threads(1, exact=True):
        return fn(context, cell, seed)


def _warm_up() -> None:
    """Import what every cell needs (torch: seconds), so that a fresh worker does it before its first cell."""
    import torch  # noqa: F401

    import semcom.threads  # noqa: F401


def _warm_up_workers(client) -> None:
    """Each worker imports torch while this process prepares the sweep (fire and forget)."""
    from distributed import fire_and_forget

    for address in client.scheduler_info().get("workers", {}):
        fire_and_forget(client.submit(_warm_up, pure=False, workers=[address], key=f"semcom-warm-up-{address}"))


class Serial:
    """Every cell in order, in this process (the default)."""

    workers = 1
    parallel = False

    def map(self, fn: CellFn, cells: Sequence[Hashable], context=None, seed: int = 0,
            progress: Progress = None) -> list:
        out = []
        for cell in cells:
            out.append(run_cell(fn, context, cell, cell_seed(seed, cell)))
            if progress:
                progress(cell_label(cell))
        return out

    def __repr__(self) -> str:
        return "serial"


class DaskSweep:
    """The cells as tasks of a ``distributed.Client``; results in cell order, progress as each one finishes."""

    parallel = True

    def __init__(self, client, label: str):
        self.client = client
        self.label = label

    @property
    def workers(self) -> int:
        """Threads over all workers (at least 1): how many cells run at once."""
        return max(1, sum(self.client.nthreads().values()))

    def map(self, fn: CellFn, cells: Sequence[Hashable], context=None, seed: int = 0,
            progress: Progress = None) -> list:
        from distributed import as_completed

        cells = list(cells)
        if not cells:
            return []
        # once per worker, not once per cell; a fresh key each time (hash=False), so releasing it after this map
        # never races with the next map's scatter of equal data
        shared = self.client.scatter([context], broadcast=True, hash=False)[0]
        tag = uuid.uuid4().hex[:8]
        futures = [self.client.submit(run_cell, fn, shared, cell, cell_seed(seed, cell), pure=False,
                                      key=f"semcom-cell-{tag}-{i}") for i, cell in enumerate(cells)]
        index = {f.key: i for i, f in enumerate(futures)}
        out: list = [None] * len(cells)
        try:
            for fut in as_completed(futures):
                i = index[fut.key]
                out[i] = fut.result()  # a cell's exception is raised here, with its own traceback
                if progress:
                    progress(cell_label(cells[i]))
        finally:
            self.client.cancel(futures + [shared])
        return out

    def __repr__(self) -> str:
        return self.label


SERIAL = Serial()


def map_cells(fn: CellFn, cells: Sequence[Hashable], context=None, seed: int = 0, progress: Progress = None,
              strategy: Serial | DaskSweep | None = None) -> list:
    """``[fn(context, cell, cell_seed(seed, cell)) for cell in cells]`` on ``strategy`` (serial by default)."""
    return (strategy or SERIAL).map(fn, cells, context, seed, progress)


def add_sweep_args(p, what: str = "the cells of every sweep") -> None:
    """``--workers N`` / ``--scheduler ADDRESS`` (mutually exclusive; checked by :func:`check_workers`)."""
    g = p.add_argument_group("parallel sweeps on Dask (docs/scale.md); results identical to a serial run")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help=f"run {what} on a local Dask cluster of N worker processes (one thread each)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=f"run {what} on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 "
                        "(workers need semcom installed, same version)")


def check_workers(workers: int | None, scheduler: str | None) -> None:
    """The one-line errors of ``--workers N`` / ``--scheduler ADDRESS``."""
    if workers is not None and scheduler is not None:
        raise ConfigError("give --workers N (a local Dask cluster) or --scheduler ADDRESS (an existing one), "
                          "not both")
    if workers is not None and not 1 <= workers <= 1024:
        raise ConfigError(f"invalid --workers={workers}: must be 1..1024")
    if scheduler is not None and not scheduler.strip():
        raise ConfigError("invalid --scheduler='': give the scheduler's address, e.g. tcp://10.0.0.5:8786")


@contextmanager
def sweep_strategy(workers: int | None = None, scheduler: str | None = None,
                   timeout: float | None = None) -> Iterator[Serial | DaskSweep]:
    """The strategy a command asked for: :data:`SERIAL` (neither option), a ``distributed.LocalCluster`` of
    ``workers`` processes with one thread each, or a ``distributed.Client`` of the scheduler at ``scheduler``
    (an error after ``timeout`` seconds, default :data:`SCHEDULER_TIMEOUT_S`, when it cannot be reached);
    closed again on exit (the local cluster with it)."""
    check_workers(workers, scheduler)
    if workers is None and scheduler is None:
        yield SERIAL
        return
    import dask
    from distributed import Client, LocalCluster

    if workers is not None:
        with dask.config.set(WORKER_CONFIG):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
        client = Client(cluster)
        _warm_up_workers(client)
        try:
            yield DaskSweep(client, f"local Dask cluster, {workers} worker{'s' if workers > 1 else ''}")
        finally:
            client.close()
            cluster.close()
        return
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the failure is our one line, not distributed's log
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S if timeout is None else timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({why})") from None
    finally:
        quiet.setLevel(level)
    try:
        yield DaskSweep(client, f"Dask scheduler {scheduler}")
    finally:
        client.close()
