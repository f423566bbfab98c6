"""The grounded codebook paper's VQ-VAE (issue 10, item 1): one class, four ablation variants.

Equation numbers follow ``papers/README.md`` ("Codebook paper: the equations that were lost"); the losses
themselves are the hand-written, tested functions of :mod:`semcom.quantization.codebook`.

* **Encoder** ``g_a``: the GDN stack of :class:`semcom.models.hyperprior.SpatialHyperprior` (three stride-2
  5x5 convolutions, GDN between them), a ``H x W`` frame in [0, 1] (scaled to [-1, 1]) to a
  ``D x H/8 x W/8`` grid of vectors ``z`` (8x8 for 64x64 frames).
* **Codebook** of ``J`` codewords ``e_j in R^D``, ``J`` a power of two in 16..4096; each ``z`` is replaced by
  its nearest codeword, eqs. (1)-(4), and the ``H/8 x W/8`` grid of indices is what is sent
  (``n = log2 J`` bits each).
* **Decoder** ``g_s``: the GDN-inverse stack of the hyperprior's synthesis, back to ``3 x H x W``.

**The codebook and vector-quantize-pytorch.** The codebook lives in a ``vector_quantize_pytorch.VectorQuantize``
(Euclidean distance, one head, no projection, ``accept_image_fmap=True``), which provides the k-means
initialisation on the first training batch (``kmeans_init=True``), dead-code reset (``threshold_ema_dead_code``:
a codeword whose EMA usage count falls below the threshold is replaced by a vector of the current batch), the
nearest-codeword search and the straight-through estimator on the way to the decoder (``rotation_trick=False``).
Its own commitment loss is switched off (``commitment_weight=0``): the loss is the paper's, computed here.
Two ways of updating the codewords (``codebook_update``):

* ``"gradient"`` (default, all four variants): ``learnable_codebook=True, ema_update=False``; the codebook is a
  plain ``nn.Parameter`` moved by the optimizer through the codebook term of eq. (5) **and** through the entropy
  term (10)-(13) and the channel-aware term (22), which depend on the codewords. The channel-aware loss is what
  arranges codewords whose binary labels are a bit-flip apart to lie close together; an EMA codebook, which only
  tracks the centroids of its Voronoi cells, cannot learn that, so the paper's gradient-based losses need a
  gradient-trained codebook. The same update is used for every variant so that the ablation compares losses,
  not update rules.
* ``"ema"``: the library's exponential-moving-average update (``decay``) replaces the codebook term of (5)
  (the k-means-like VQ-VAE-2 update, a common plain-VQ-VAE baseline); the codewords are buffers and the entropy
  and channel-aware terms act on the encoder output only.

**Loss** (eq. 23), returned by :meth:`CodebookVQVAE.forward` term by term:
``L = L_q - lambda_H H + lambda_ch L_ch`` with ``L_q`` of eq. (5) (``beta`` the commitment weight), ``H`` the
soft index entropy of eqs. (10)-(11) at ``temperature`` and ``L_ch`` the channel-aware loss of eq. (22) with the
exact ``P(k|i)`` of eq. (17) under a BSC of flip probability ``p``. A term whose weight is 0 is not computed and
is absent from the total. The end-to-end loss (24)-(25) adds the reconstruction terms:
:mod:`semcom.training.vqvae_loss`.

**Variants** (:data:`VARIANTS`): ``vqvae`` (``lambda_H = lambda_ch = 0``), ``vqvae+entropy`` (``lambda_ch = 0``,
eq. 13), ``vqvae+channel`` (``lambda_H = 0``) and ``proposed`` (both), the paper's ablation. The default ``p``
is the uncoded bit-flip probability of 64-QAM over flat Rayleigh fading at 10 dB (``E_s/N_0``), the paper's
headline operating point: ``bsc_flip_probability("qam64", 10, "rayleigh")``, about 0.205 (an 8-bit index then
arrives wrong 84 % of the time, eq. 16); trainers set ``p`` for the SNR they train at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from semcom.errors import ConfigError, WeightsError
from semcom.models.gdn import GDN
from semcom.models.hyperprior import _conv, _deconv
from semcom.quantization.codebook import (
    channel_aware_loss,
    check_codebook_size,
    check_flip_probability,
    hard_index_entropy,
    index_bits,
    index_entropy,
    nearest_indices,
    quantization_loss,
)

__all__ = ["CodebookVQVAE", "DEFAULT_P", "VARIANTS", "VQVAEOutput", "codebook_usage", "load_vqvae",
           "shipped_vqvae_path"]

#: The paper's operating point for the channel-aware loss: 64-QAM, flat Rayleigh, 10 dB; the value of
#: ``semcom.quantization.codebook.bsc_flip_probability("qam64", 10.0, "rayleigh")`` rounded to 3 digits.
DEFAULT_P = 0.205

#: The four ablation variants of the paper: loss weights of eq. (23) (``p`` is the training flip probability).
VARIANTS: dict[str, dict[str, float]] = {
    "vqvae": {"lambda_h": 0.0, "lambda_ch": 0.0, "p": DEFAULT_P},
    "vqvae+entropy": {"lambda_h": 0.1, "lambda_ch": 0.0, "p": DEFAULT_P},
    "vqvae+channel": {"lambda_h": 0.0, "lambda_ch": 1.0, "p": DEFAULT_P},
    "proposed": {"lambda_h": 0.1, "lambda_ch": 1.0, "p": DEFAULT_P},
}

#: A regular expression matching exactly the names of :data:`VARIANTS` (for validated configs).
VARIANT_PATTERN = "^(" + "|".join(v.replace("+", r"\+") for v in VARIANTS) + ")$"

_UPDATES = ("gradient", "ema")


@dataclass
class VQVAEOutput:
    """What :meth:`CodebookVQVAE.forward` returns: the reconstruction ``x_hat`` (``[B, 3, H, W]``), the indices
    sent (``[B, H/8, W/8]`` int64), the encoder output ``z`` and its quantised ``z_q`` (``[B, D, H/8, W/8]``) and
    the loss terms of eq. (23) (0-dim tensors): ``quantization`` (5), ``entropy`` (10, nats; only when
    ``lambda_h > 0``), ``channel_aware`` (22; only when ``lambda_ch > 0``) and ``codebook`` (23, the total)."""

    x_hat: torch.Tensor
    indices: torch.Tensor
    z: torch.Tensor
    z_q: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


def codebook_usage(indices: torch.Tensor, J: int) -> dict[str, float | int]:
    """``index_entropy_bits`` (the entropy of the hard index histogram, ``H(i)`` of eqs. (9)/(12), in bits; at
    most ``log2 J``) and ``used_codewords`` (how many of the ``J`` codewords occur) over ``indices``."""
    J = check_codebook_size(J)
    idx = indices.reshape(-1).long()
    if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= J:
        raise ConfigError(f"invalid indices: need at least one index, all in 0..{J - 1}")
    return {"index_entropy_bits": hard_index_entropy(idx, J, unit="bits"),
            "used_codewords": int(torch.unique(idx).numel())}


def _nonneg(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"invalid {name}: must be a non-negative finite number, got {name}={value!r}")
    return float(value)


def _posint(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid {name}: must be a positive integer, got {name}={value!r}")
    return value


class CodebookVQVAE(nn.Module):
    """The paper's VQ-VAE (see the module docstring): ``g_a``, the codebook (``self.vq``), ``g_s``.

    ``n`` channels in the hidden layers, ``d`` the codeword dimension ``D``, ``J`` the codebook size (a power of
    two in 16..4096), ``variant`` one of :data:`VARIANTS`, whose ``lambda_h``, ``lambda_ch`` and ``p`` any keyword
    of the same name overrides; ``beta`` the commitment weight of eq. (5), ``temperature`` the ``T`` of eq. (11),
    ``codebook_update`` ``"gradient"`` or ``"ema"``, ``dead_code_threshold`` the EMA usage count under which a
    codeword is reset (0: never), ``decay`` the EMA decay of the usage counts (and of the codewords under
    ``"ema"``), ``kmeans_iters`` the k-means iterations of the initialisation."""

    #: What ``--device`` moves (:mod:`semcom.models.device`): analysis and synthesis; the codebook stays on the CPU.
    DEVICE_PARTS = ("g_a", "g_s")

    def __init__(self, n: int = 96, d: int = 64, J: int = 256, variant: str = "proposed", *,
                 lambda_h: float | None = None, lambda_ch: float | None = None, p: float | None = None,
                 beta: float = 0.25, temperature: float = 1.0, codebook_update: str = "gradient",
                 dead_code_threshold: float = 1.0, decay: float = 0.99, kmeans_iters: int = 10,
                 height: int = 64, width: int = 64):
        super().__init__()
        J = check_codebook_size(J)
        if variant not in VARIANTS:
            raise ConfigError(f"invalid variant: choose from {', '.join(VARIANTS)}, got variant={variant!r}")
        if codebook_update not in _UPDATES:
            raise ConfigError(f"invalid codebook_update: choose 'gradient' or 'ema', got {codebook_update!r}")
        n, d, kmeans_iters = _posint(n, "n"), _posint(d, "d"), _posint(kmeans_iters, "kmeans_iters")
        for name, side in (("height", height), ("width", width)):
            if _posint(side, name) % 8:
                raise ConfigError(f"invalid {name}: frame sides must be multiples of 8, got {name}={side}")
        cfg = dict(VARIANTS[variant])
        cfg.update({k: v for k, v in (("lambda_h", lambda_h), ("lambda_ch", lambda_ch), ("p", p)) if v is not None})
        lambda_h, lambda_ch = _nonneg(cfg["lambda_h"], "lambda_h"), _nonneg(cfg["lambda_ch"], "lambda_ch")
        p = check_flip_probability(cfg["p"])
        beta = _nonneg(beta, "beta")
        temperature = _nonneg(temperature, "temperature")
        if temperature == 0.0:
            raise ConfigError(f"invalid temperature: must be positive, got temperature={temperature!r}")
        dead_code_threshold = _nonneg(dead_code_threshold, "dead_code_threshold")
        if not (isinstance(decay, (int, float)) and 0.0 < decay < 1.0):
            raise ConfigError(f"invalid decay: must be in (0, 1), got decay={decay!r}")

        self.hparams = {"n": n, "d": d, "J": J, "variant": variant, "lambda_h": lambda_h, "lambda_ch": lambda_ch,
                        "p": p, "beta": beta, "temperature": temperature, "codebook_update": codebook_update,
                        "dead_code_threshold": dead_code_threshold, "decay": float(decay),
                        "kmeans_iters": kmeans_iters, "height": height, "width": width}
        self.g_a = nn.Sequential(_conv(3, n), GDN(n), _conv(n, n), GDN(n), _conv(n, d))
        self.g_s = nn.Sequential(_deconv(d, n), GDN(n, inverse=True), _deconv(n, n), GDN(n, inverse=True),
                                 _deconv(n, 3))
        gradient = codebook_update == "gradient"
        self.vq = VectorQuantize(
            dim=d, codebook_size=J, decay=float(decay), kmeans_init=True, kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=dead_code_threshold, accept_image_fmap=True, commitment_weight=0.0,
            rotation_trick=False, learnable_codebook=gradient, ema_update=not gradient)

    # ------------------------------------------------------------------ properties

    @property
    def J(self) -> int:
        return self.hparams["J"]

    @property
    def bits_per_index(self) -> int:
        """``n = log2 J`` (Section III-C)."""
        return index_bits(self.J)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(D, H/8, W/8)``: the grid of vectors; ``H/8 * W/8`` indices are sent per frame."""
        return self.hparams["d"], self.hparams["height"] // 8, self.hparams["width"] // 8

    @property
    def bits_per_image(self) -> int:
        """``R(J)`` of eq. (21): ``log2 J`` bits for each of the ``H/8 x W/8`` indices."""
        _, h, w = self.latent_shape
        return self.bits_per_index * h * w

    @property
    def codebook(self) -> torch.Tensor:
        """The codewords ``E``, ``[J, D]`` (a view of the library's parameter or buffer)."""
        return self.vq.codebook

    # ------------------------------------------------------------------ the two ends

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``z = g_a(2x - 1)`` for frames ``x`` in [0, 1], ``[B, 3, H, W] -> [B, D, H/8, W/8]``."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ConfigError(f"invalid x: expected [B, 3, H, W] with H, W multiples of 8, got {tuple(x.shape)}")
        return self.g_a(x * 2.0 - 1.0)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """``x^ = g_s(z_q) / 2 + 1/2``, clamped to [0, 1] outside training."""
        x = self.g_s(z_q) * 0.5 + 0.5
        return x if self.training else x.clamp(0.0, 1.0)

    @torch.no_grad()
    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """The transmitter: the nearest-codeword indices of eqs. (1)-(4), ``[B, H/8, W/8]`` int64 (no codebook
        update, whatever the mode)."""
        was_training = self.training
        self.vq.eval()
        try:
            _, idx, _ = self.vq(self.encode(x))
        finally:
            self.vq.train(was_training)
        return idx.long()

    @torch.no_grad()
    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """The receiver: frames in [0, 1] (``[B, 3, H, W]``) from any grid of integer indices in ``0..J-1``
        (``[B, h, w]``, e.g. indices corrupted by the channel)."""
        idx = torch.as_tensor(idx)
        if idx.dim() != 3 or idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
            raise ConfigError(f"invalid indices: expected an integer grid [B, h, w], got {idx.dtype} "
                              f"{tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.J):
            raise ConfigError(f"invalid indices: values must be in 0..{self.J - 1}, got {int(idx.min())}.."
                              f"{int(idx.max())}")
        z_q = self.codebook[idx.long().to(self.codebook.device)].permute(0, 3, 1, 2)
        return (self.g_s(z_q) * 0.5 + 0.5).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ training pass

    def codebook_losses(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms of eq. (23) for encoder outputs ``z`` (``[B, D, h, w]``) against the current codebook:
        ``quantization`` (5), ``entropy`` (10)-(11), in nats, when ``lambda_h > 0``, ``channel_aware`` (22) when
        ``lambda_ch > 0``, and ``codebook = quantization - lambda_h entropy + lambda_ch channel_aware`` (23)."""
        hp = self.hparams
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codebook = self.codebook
        idx = nearest_indices(flat, codebook)
        l_q = quantization_loss(flat, codebook[idx], hp["beta"])
        terms = {"quantization": l_q}
        total = l_q
        if hp["lambda_h"] > 0.0:
            terms["entropy"] = index_entropy(flat, codebook, hp["temperature"])
            total = total - hp["lambda_h"] * terms["entropy"]
        if hp["lambda_ch"] > 0.0:
            terms["channel_aware"] = channel_aware_loss(flat, codebook, hp["p"], exact=True)
            total = total + hp["lambda_ch"] * terms["channel_aware"]
        terms["codebook"] = total
        return terms

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        """Encode, quantise (k-means init on the first training batch, dead-code reset and, under ``"ema"``, the
        EMA update happen here in training mode), decode through the straight-through estimator, and the loss
        terms of eq. (23) against the codebook as it stands after the library's update."""
        z = self.encode(x)
        z_q, idx, _ = self.vq(z)
        return VQVAEOutput(self.decode(z_q), idx.long(), z, z_q, self.codebook_losses(z))

    def usage(self, x_or_indices: torch.Tensor) -> dict[str, float | int]:
        """``index_entropy_bits`` and ``used_codewords`` (issue 10's interface) over a batch of frames
        (``[B, 3, H, W]``) or of index grids."""
        t = x_or_indices
        idx = self.indices(t) if t.is_floating_point() and t.dim() == 4 else t
        return codebook_usage(idx, self.J)


# ====================================================================== weights

#: Bounds on what a weights file may declare before anything is allocated.
_HPARAM_LIMITS = {"n": (1, 1024), "d": (1, 1024), "height": (8, 4096), "width": (8, 4096), "kmeans_iters": (1, 1000)}


def shipped_vqvae_path(variant: str) -> Path:
    """The shipped weights of ``variant`` (one of :data:`VARIANTS`): ``weights/codebook_<variant>.safetensors``
    with ``+`` written ``-`` (``vqvae+entropy`` -> ``codebook_vqvae-entropy.safetensors``)."""
    if variant not in VARIANTS:
        raise ConfigError(f"invalid variant: choose from {', '.join(VARIANTS)}, got variant={variant!r}")
    name = "codebook_" + variant.replace("+", "-") + ".safetensors"
    return Path(str(resources.files("semcom.models") / "weights" / name))


def load_vqvae(path: str | Path) -> CodebookVQVAE:
    """A :class:`CodebookVQVAE` from a safetensors file written by :func:`semcom.training.vqvae.save_vqvae`
    (float32, eval mode, no gradients). The metadata's hyper-parameters are checked against their bounds and the
    tensors' shapes against the model they describe (built on the meta device) before any tensor is read;
    anything wrong is a one-line :class:`~semcom.errors.WeightsError` naming the file."""
    from semcom.models.weights import check_shapes, json_field, read_header, read_tensors

    path = Path(path)
    meta, shapes = read_header(path)
    if meta.get("kind") != "codebook-vqvae":
        raise WeightsError(f"weights {path} are not a codebook VQ-VAE (kind={meta.get('kind')!r})")
    hp = json_field(path, meta, "hparams")
    for k, (lo, hi) in _HPARAM_LIMITS.items():
        v = hp.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise WeightsError(f"weights {path} declare {k}={v!r}, outside {lo}..{hi}")
    kwargs = {k: hp.get(k) for k in ("n", "d", "J", "variant", "lambda_h", "lambda_ch", "p", "beta", "temperature",
                                     "codebook_update", "dead_code_threshold", "decay", "kmeans_iters", "height",
                                     "width")}
    try:
        check_shapes(path, shapes, lambda: CodebookVQVAE(**kwargs), "VQ-VAE their metadata")
    except (ConfigError, TypeError) as exc:
        raise WeightsError(f"weights {path} declare an invalid model: {exc}") from None
    tensors = read_tensors(path)
    model = CodebookVQVAE(**kwargs)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()})
    model.metadata = dict(meta)
    from semcom.models.device import place

    return place(model.eval().requires_grad_(False))  # on the --device of the command (semcom.models.device)
