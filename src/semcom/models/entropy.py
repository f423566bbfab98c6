"""Entropy models of the learned codecs, with CompressAI's two faces.

During training a model returns the *likelihood* of its (noisy) input, whose ``-log2`` is the rate
term of the loss; at coding time the same model turns integer symbols into bytes and back with
constriction's range coder, identically at both ends.

* :class:`GaussianConditional` — ``p(y^ | sigma) = Phi((y^ + 1/2) / sigma) - Phi((y^ - 1/2) / sigma)``,
  a zero-mean Gaussian convolved with a unit uniform (the conditional of Ballé et al. 2018). The scale a
  hyperprior predicts is snapped to a fixed log-spaced table before coding, so both ends use
  exactly the same float parameters.
* :class:`FactorizedLaplace` — the hyper-latent's factorised prior: one zero-mean Laplace per
  channel with a learned scale, likewise convolved with a unit uniform.

Symbols outside ``[-SYMBOL_RANGE, SYMBOL_RANGE]`` are clipped by the transmitter before it
reconstructs, so what the receiver decodes is what the transmitter computed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from semcom.errors import WireFormatError

SYMBOL_RANGE = 127
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 64
LIKELIHOOD_FLOOR = 1e-9


def scale_table() -> torch.Tensor:
    """The ``SCALE_LEVELS`` log-spaced scales a Gaussian conditional codes with (float32)."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2.0 ** -0.5))


def _laplace_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 - 0.5 * torch.sign(x) * torch.expm1(-x.abs())


def bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Rate in bits of symbols with these likelihoods, summed per batch element: ``-sum log2 p``."""
    return -torch.log2(likelihoods).flatten(1).sum(1)


class _RangeCoded:
    """Decoding from a constriction range decoder, with its failures turned into WireFormatError."""

    @staticmethod
    def _decode(decoder, family, *params: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(decoder.decode(family, *(p.astype(np.float64).ravel() for p in params)), np.int64)
        except (AssertionError, ValueError, RuntimeError) as exc:
            raise WireFormatError(f"entropy-coded latent does not decode: {exc}") from None


def clip_symbols(y: torch.Tensor) -> torch.Tensor:
    """``round(y)`` clipped to the coder's alphabet (what both ends reconstruct)."""
    return torch.round(y).clamp(-SYMBOL_RANGE, SYMBOL_RANGE)


class GaussianConditional(nn.Module, _RangeCoded):
    """Zero-mean Gaussian conditional on a predicted scale (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", scale_table(), persistent=False)

    def likelihood(self, y: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        s = scales.clamp_min(SCALE_MIN)
        v = y.abs()
        p = _std_normal_cdf((0.5 - v) / s) - _std_normal_cdf((-0.5 - v) / s)
        return p.clamp_min(LIKELIHOOD_FLOOR)

    def indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """Index of the smallest table scale at least ``scales`` (CompressAI's rule)."""
        return torch.searchsorted(self.table, scales.contiguous().clamp(SCALE_MIN, SCALE_MAX)).clamp_max(
            SCALE_LEVELS - 1)

    def encode(self, symbols: torch.Tensor, indexes: torch.Tensor, encoder) -> None:
        """Append integer ``symbols`` with table scales ``indexes`` to a constriction RangeEncoder."""
        import constriction

        family = constriction.stream.model.QuantizedGaussian(-SYMBOL_RANGE, SYMBOL_RANGE)
        std = self.table[indexes.flatten()].numpy()
        encoder.encode(symbols.flatten().numpy().astype(np.int32), family, np.zeros_like(std, np.float64),
                       std.astype(np.float64))

    def decode(self, indexes: torch.Tensor, decoder) -> torch.Tensor:
        import constriction

        family = constriction.stream.model.QuantizedGaussian(-SYMBOL_RANGE, SYMBOL_RANGE)
        std = self.table[indexes.flatten()].numpy()
        out = self._decode(decoder, family, np.zeros_like(std), std)
        return torch.from_numpy(out).float().view(indexes.shape)


class FactorizedLaplace(nn.Module, _RangeCoded):
    """One zero-mean Laplace per channel, scale ``exp(log_scale_c)``, for a (B, C, h, w) hyper-latent."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scale).clamp(SCALE_MIN, SCALE_MAX)

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        b = self.scales().view(1, -1, 1, 1)
        p = _laplace_cdf((z + 0.5) / b) - _laplace_cdf((z - 0.5) / b)
        return p.clamp_min(LIKELIHOOD_FLOOR)

    def _params(self, shape: torch.Size) -> np.ndarray:
        b = self.scales().detach().view(1, -1, 1, 1).expand(shape)
        return b.contiguous().numpy().astype(np.float64).ravel()

    def encode(self, symbols: torch.Tensor, encoder) -> None:
        import constriction

        family = constriction.stream.model.QuantizedLaplace(-SYMBOL_RANGE, SYMBOL_RANGE)
        b = self._params(symbols.shape)
        encoder.encode(symbols.flatten().numpy().astype(np.int32), family, np.zeros_like(b), b)

    def decode(self, shape: tuple[int, ...], decoder) -> torch.Tensor:
        import constriction

        family = constriction.stream.model.QuantizedLaplace(-SYMBOL_RANGE, SYMBOL_RANGE)
        b = self._params(torch.Size(shape))
        return torch.from_numpy(self._decode(decoder, family, np.zeros_like(b), b)).float().view(shape)
