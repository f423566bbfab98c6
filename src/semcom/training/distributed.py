"""Training on many processes: ``torchrun --nproc-per-node N -m semcom train ...`` (issue 14, item 4).

Data parallelism with :class:`torch.nn.parallel.DistributedDataParallel` (gloo on the CPU, NCCL on CUDA), arranged
so that ``N`` processes train the *same* model as one process with the same global batch:

* every rank draws the whole global batch from the same seeded generators, in the same order as the
  single-process loop (crops, augmentation, noise, reparameterisation samples), and keeps its slice
  :meth:`DistContext.shard` (rank ``r`` of ``N`` takes rows ``r B/N .. (r + 1) B/N - 1``); a global batch that
  ``N`` does not divide is refused with a one-line error;
* every trainer's loss is a mean over the batch of per-sample terms, so the mean of the ranks' slice means,
  which is what DDP's gradient all-reduce computes, is the single-process gradient; only the order of the
  float summation differs (a few ulps per step, see ``docs/_scale_ddp_cuda.md`` for the tolerance);
* scalars outside the model (Algorithm 1's ``tau`` gradient, the logged losses, the dual step's epoch mean) are
  averaged with :meth:`DistContext.mean`;
* only rank 0 writes weights, checkpoints, logs and the run folder (:attr:`DistContext.is_main`).

Outside torchrun (no ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment) :func:`distributed` yields a
one-process context whose methods do nothing, so the trainers have one code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from semcom.errors import ConfigError

__all__ = ["DistContext", "distributed", "refuse_distributed", "torchrun_env"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when launched by torchrun (all three variables set), else None."""
    if not all(k in os.environ for k in _ENV):
        return None
    try:
        rank, world, local = (int(os.environ[k]) for k in _ENV)
    except ValueError:
        raise ConfigError(f"torchrun environment holds a non-integer among {', '.join(_ENV)}") from None
    if not (0 <= rank < world and 0 <= local):
        raise ConfigError(f"torchrun environment is inconsistent: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def refuse_distributed(what: str, why: str) -> None:
    """A one-line :class:`ConfigError` when launched on more than one process: ``what`` cannot train DDP-equal."""
    env = torchrun_env()
    if env is not None and env[1] > 1:
        raise ConfigError(f"{what} cannot train on {env[1]} processes ({why}); run it as one process")


@dataclass
class DistContext:
    """Where this process stands: rank, world size, local rank, its device; a no-op when ``world_size`` is 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes weights, logs and run folders."""
        return self.rank == 0

    def shard(self, global_batch: int) -> slice:
        """This rank's rows of a global batch of ``global_batch`` (split equally; refused if not divisible)."""
        if global_batch % self.world_size:
            raise ConfigError(f"invalid batch_size={global_batch}: the global batch must be divisible by the "
                              f"{self.world_size} processes")
        b = global_batch // self.world_size
        return slice(self.rank * b, (self.rank + 1) * b)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over the ranks), or itself on one process."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def mean(self, values: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The mean over the ranks of a vector of numbers (float64; itself on one process)."""
        t = torch.stack([torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(()) for v in values])
        if not self.enabled:
            return t
        import torch.distributed as dist

        t = t.to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu() / self.world_size

    def mean_grad(self, p: torch.Tensor) -> None:
        """Average the gradient of a tensor DDP does not own (e.g. Algorithm 1's ``tau``) over the ranks."""
        if self.enabled and p.grad is not None:
            import torch.distributed as dist

            g = p.grad.to(self.device)
            dist.all_reduce(g, op=dist.ReduceOp.SUM)
            p.grad = (g / self.world_size).to(p.grad.device)


@contextmanager
def distributed(device: str | torch.device = "cpu") -> Iterator[DistContext]:
    """The process group for a torchrun launch (gloo on the CPU, NCCL on CUDA, ``env://`` rendezvous), destroyed at
    the end; outside torchrun, a one-process :class:`DistContext` on ``device``. On CUDA each rank takes the GPU
    of its ``LOCAL_RANK`` (``--device cuda``; ``cuda:N`` is refused under torchrun)."""
    device = torch.device(device)
    env = torchrun_env()
    if env is None or env[1] == 1:
        yield DistContext(device=device)
        return
    rank, world, local = env
    import torch.distributed as dist

    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError("--device cuda:N is for one process; under torchrun give --device cuda (each rank "
                              "takes the GPU of its LOCAL_RANK)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        yield DistContext(rank, world, local, device)
    finally:
        dist.destroy_process_group()
