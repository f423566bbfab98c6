"""Where a model's neural work runs: ``--device cpu|cuda|cuda:N`` (issue 14, item 5).

A model of the zoo names, in its class attribute ``DEVICE_PARTS``, the transforms whose floats decide no bit and
no memory content: the sphere autoencoder's ``encoder`` and ``decoder``, the hyperprior's and the VQ-VAE's
analysis ``g_a`` and synthesis ``g_s``. :func:`place` moves only those to the device and hooks them so that they
take CPU tensors and give CPU tensors back; everything else (the hyperprior's hyper-analysis ``h_a``,
hyper-synthesis ``h_s`` and gain vectors, the entropy models and their scale table, the VQ codebook and its
nearest-codeword search, every memory) stays on the CPU. So the code of the schemes runs unchanged, and what
the two ends of a link must compute alike is computed by the same CPU code at both ends.

**What differs between devices, and why the memories cannot drift apart.** A CUDA convolution sums in another
order than the CPU's (and may use TF32 or other kernels), so ``g_a``, ``g_s``, the encoder and the decoder give
results that differ from the CPU's in the last bits (about 1e-6 relative in float32; more with TF32). Those
differences reach only

* the *transmitter's choices*: the latent ``y = g_a(x)`` or ``z = f(x)`` (which prototype to use, hit or miss,
  which tiles hit, the rate–distortion choice among candidates, the rounding ``r^ = round(y - y^_ref)`` and
  ``Q(z)``, the VQ indices). Each choice is written into the stream as integers (kind, rank, tile flags,
  ``z^``, ``r^``, codes, tokens), and the memory stores what those integers decode to, at both ends;
* the *pixels shown*: ``x^ = g_s(y^)`` or ``g(z^)``, which may differ by one grey level after rounding to uint8.
  Pixels are never stored in a memory.

Everything a receiver computes from the stream before it decodes the next symbol (the adaptive counts, the
hyperprior's scales ``sigma = h_s(z^, y^_ref)`` snapped to the scale table, the Laplace scales of ``z^``, the
memory's prototypes ``y^_ref + r^``, dequantised latents, token grids) is computed on the CPU from integers, by
the same code on both ends, so a stream encoded on one device decodes on the other with both memories identical
(tests/test_device.py). The scales, the one float network on that path, are why ``h_s`` stays on the CPU: a
CUDA ``h_s`` could move a scale across a table boundary and desynchronise the range coder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["current_device", "default_device", "device_parts", "place"]

_DEFAULT: list[torch.device] = [torch.device("cpu")]


def current_device() -> torch.device:
    """The device the loaders of the zoo place models on (``cpu`` unless inside :func:`default_device`)."""
    return _DEFAULT[-1]


@contextmanager
def default_device(device: str | torch.device) -> Iterator[torch.device]:
    """Within the block, every model the loaders return (sphere64, the hyperprior, the VQ-VAE) is
    :func:`place`-d on ``device``; what a command's ``--device`` does."""
    _DEFAULT.append(torch.device(device))
    try:
        yield _DEFAULT[-1]
    finally:
        _DEFAULT.pop()


def device_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The sub-modules of ``model`` that may leave the CPU (its class's ``DEVICE_PARTS``)."""
    return {name: getattr(model, name) for name in getattr(model, "DEVICE_PARTS", ())}


def _to(device: torch.device):
    def pre_hook(_module, args):
        return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)

    return pre_hook


def _to_cpu(_module, _args, output):
    if isinstance(output, torch.Tensor):
        return output.cpu()
    if isinstance(output, tuple):
        return tuple(o.cpu() if isinstance(o, torch.Tensor) else o for o in output)
    return output


def place(model: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """Move ``model``'s :func:`device_parts` to ``device`` (default :func:`current_device`), hooked to take and give
    CPU tensors; the rest of the model stays on the CPU. Placing again (e.g. back on ``cpu``) replaces the hooks.
    Returns ``model``."""
    device = torch.device(device) if device is not None else current_device()
    for part in device_parts(model).values():
        hooks = getattr(part, "_semcom_device_hooks", ())
        if device.type == "cpu" and not hooks:
            continue
        for h in hooks:
            h.remove()
        part.to(device)
        part._semcom_device_hooks = () if device.type == "cpu" else (
            part.register_forward_pre_hook(_to(device)), part.register_forward_hook(_to_cpu))
    return model
