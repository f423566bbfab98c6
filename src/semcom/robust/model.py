"""The robust paper's masked VQ-VAE (Sections III-IV, Figs. 2-3) and its ViT JSCC anchor (Section V-A).

:class:`MaskedVQVAE`, transmitter then receiver:

1. **Masking** (:mod:`semcom.robust.masking`): keep ``T = round(N (1 - mask_ratio))`` of the ``N`` patches
   (noise-aware by default). In training the mask is random, one per row; in eval mode **one** mask is drawn
   from a generator seeded with ``config.mask_seed`` (a single row, the same at every call) and given to every
   image of the batch, so the model is a deterministic function of each image alone, whatever the batch size or
   the image's row (attacks and reproductions see one fixed function; a link that shares the seed needs no
   position bits unless the FIM or deduplication drops indices). The mask is not derived from the image: a mask
   that moved when an attack perturbs the input would hide gradients and flatter robustness.
2. **Encoder** (:mod:`semcom.robust.vit`): the ViT on the kept patches only, then a linear map to ``D =
   code_dim``: the encoded features ``z_e`` ``[B, T, D]``.
3. **FIM** (:mod:`semcom.robust.fim`, when ``use_fim``): reweights ``z_e`` by its SNR-dependent importance and
   marks the tokens below ``fim_threshold`` as not sent.
4. **Quantiser** (:mod:`semcom.robust.codebook`): each token to the index of its nearest codeword, eq. (11), with
   the straight-through estimator (in eval mode too, so a forward returning logits is differentiable end to end).
5. **Deduplication** (Fig. 2b, ``dedup_threshold < 1``): indices whose codewords are more than ``delta`` similar to
   one already sent are dropped.
6. **The seam for a channel**: the transmitted index grid ``[B, N]`` (int64, ``-1`` at every position that carries
   nothing) goes through ``channel`` (any function mapping it to a received grid of the same shape; the identity
   when ``None``; :func:`symmetric_index_channel` is a simple random-index-error model for training). The
   lead's ``semcom.phy`` link (bits, 16-QAM, LDPC, 8x4 MIMO) plugs in here.
7. **Receiver**: codeword look-up at every received position (``-1`` gets the shared learned mask token, as in
   MAE's decoder), a learned position embedding on all ``N`` tokens, and one head of **three fully connected
   layers** per task (Section V-A) on the flattened token grid: ``classification`` (logits), ``retrieval`` (a
   unit-norm embedding for recall@1), ``reconstruction`` (pixels in [0, 1]). The gradient of a received index
   passes straight through to the encoder output it came from.

:class:`ViTJSCC`: the same masking, ViT and heads, with an analogue latent instead of indices: ``z_e`` is power
normalised per image to unit average energy per complex symbol (pairs of real values; ``mean z^2 = 1/2``) and goes
through a latent channel (``None``: noiseless; :func:`awgn_channel` for AWGN at an SNR).

Both return a :class:`RobustOutput`; :meth:`MaskedVQVAE.logits` and :meth:`MaskedVQVAE.classifier` give the plain
``images -> logits`` function the attacks need.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from semcom.errors import ConfigError
from semcom.robust.codebook import VectorQuantizer, codeword_similarity, dedup_mask, orthogonality_loss
from semcom.robust.config import RobustConfig, robust_config
from semcom.robust.fim import FeatureImportance, snr_tensor
from semcom.robust.masking import PatchMasking
from semcom.robust.vit import ViTEncoder

__all__ = ["IndexChannel", "LatentChannel", "LogitsModel", "MaskedVQVAE", "RobustOutput", "TaskHeads", "ViTJSCC",
           "awgn_channel", "build_model", "symmetric_index_channel"]

#: Maps the transmitted index grid ``[B, N]`` (int64, ``-1``: nothing sent there) to the received one.
IndexChannel = Callable[[torch.Tensor], torch.Tensor]
#: Maps the power-normalised analogue latent ``[B, T, D]`` to the received one (JSCC).
LatentChannel = Callable[[torch.Tensor], torch.Tensor]


def symmetric_index_channel(error_prob: float, J: int, generator: torch.Generator | None = None) -> IndexChannel:
    """A channel on indices: each sent index is independently replaced, with probability ``error_prob``, by one
    drawn uniformly from the ``J`` codewords (positions are kept). A stand-in for the index errors left by the PHY,
    e.g. for training at an SNR; ``error_prob = 1 - (1 - BER)^(log2 J)`` for a BER after decoding."""
    if isinstance(error_prob, bool) or not isinstance(error_prob, (int, float)) or not 0.0 <= error_prob <= 1.0:
        raise ConfigError(f"invalid error_prob={error_prob!r}: must be in [0, 1]")

    def channel(grid: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(grid.shape, generator=generator).to(grid.device) < error_prob
        other = torch.randint(0, J, grid.shape, generator=generator).to(grid.device)
        return torch.where(flip & (grid >= 0), other, grid)

    return channel


def awgn_channel(snr_db: float, generator: torch.Generator | None = None) -> LatentChannel:
    """AWGN on the JSCC's power-normalised latent: unit energy per complex symbol (two real values), so noise of
    variance ``10^(-snr_db/10) / 2`` per real value gives ``E_s / N_0 = snr_db``."""
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db):
        raise ConfigError(f"invalid snr_db={snr_db!r}: must be a finite number")
    sigma = math.sqrt(10.0 ** (-snr_db / 10.0) / 2.0)

    def channel(z: torch.Tensor) -> torch.Tensor:
        return z + sigma * torch.randn(z.shape, generator=generator).to(device=z.device, dtype=z.dtype)

    return channel


@dataclass
class RobustOutput:
    """What a forward pass returns. ``logits`` ``[B, n_classes]``, ``embedding`` ``[B, retrieval_dim]`` (unit
    norm) and ``reconstruction`` ``[B, C, H, W]`` for the configured tasks (``None`` otherwise); ``keep`` the kept
    patch positions ``[B, T]``; ``features`` the encoded features ``z_e`` ``[B, T, D]`` (after the FIM); ``sent``
    and ``received`` the index grids ``[B, N]`` (``-1``: nothing there; ``None`` for the JSCC); ``fim_logits`` and
    ``fim_weights`` (``None`` without a FIM); ``losses`` the label-free terms: ``codebook`` and ``commitment``
    (eq. 12), ``orthogonality`` (``||E^T E - I||^2 / J^2``)."""

    logits: torch.Tensor | None
    embedding: torch.Tensor | None
    reconstruction: torch.Tensor | None
    keep: torch.Tensor
    features: torch.Tensor
    sent: torch.Tensor | None = None
    received: torch.Tensor | None = None
    fim_logits: torch.Tensor | None = None
    fim_weights: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def indices_sent(self) -> torch.Tensor:
        """How many indices each image sends, ``[B]`` (``T`` for the JSCC, which sends every token)."""
        if self.sent is None:
            return torch.full((self.keep.shape[0],), self.keep.shape[1], dtype=torch.long)
        return (self.sent >= 0).sum(dim=1)


class TaskHeads(nn.Module):
    """The receiver's decoder: the full set of ``N`` tokens (received features, the learned mask token elsewhere)
    plus a learned position embedding, layer-normalised, flattened, then one head of three FC layers (GELU between
    them) per task of ``config.tasks``."""

    def __init__(self, config: RobustConfig):
        super().__init__()
        n, d, hid = config.num_patches, config.code_dim, config.head_hidden
        self.config = config
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, n, d))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.norm = nn.LayerNorm(d)
        out = {"classification": config.n_classes, "retrieval": config.retrieval_dim,
               "reconstruction": config.channels * config.height * config.width}
        width = {task: hid if task == "classification" or not config.task_head_hidden else config.task_head_hidden
                 for task in config.tasks}
        self.heads = nn.ModuleDict({
            task: nn.Sequential(nn.Linear(n * d, width[task]), nn.GELU(), nn.Linear(width[task], width[task]),
                                nn.GELU(), nn.Linear(width[task], out[task]))
            for task in config.tasks})

    def forward(self, tokens: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """``tokens`` ``[B, N, D]`` (anything where ``present`` ``[B, N]`` is False) to ``{task: output}``."""
        x = torch.where(present.unsqueeze(-1), tokens, self.mask_token.to(tokens.dtype))
        x = self.norm(x + self.pos_embed).flatten(1)
        cfg = self.config
        outputs = {task: head(x) for task, head in self.heads.items()}
        if "retrieval" in outputs:
            outputs["retrieval"] = torch.nn.functional.normalize(outputs["retrieval"], dim=1)
        if "reconstruction" in outputs:
            outputs["reconstruction"] = torch.sigmoid(outputs["reconstruction"]).reshape(
                -1, cfg.channels, cfg.height, cfg.width)
        return outputs


class _Base(nn.Module):
    """What both models share: config, masking, ViT encoder, projection to ``code_dim``, heads."""

    kind = ""

    def __init__(self, config: RobustConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            config = robust_config(**({"kind": self.kind} | overrides))
        elif overrides:
            config = robust_config(**(config.model_dump() | overrides))
        if config.kind != self.kind:
            raise ConfigError(f"invalid kind={config.kind!r}: {type(self).__name__} needs kind={self.kind!r}")
        self.config = config
        c = config
        self.masking = PatchMasking(c.num_patches, c.mask_ratio, c.masking, c.noise_weight, c.patch_size, c.pad_to)
        self.encoder = ViTEncoder(c.height, c.width, c.patch_size, c.channels, c.embed_dim, c.depth, c.heads,
                                  c.mlp_ratio, c.pad_to)
        self.proj = nn.Linear(c.embed_dim, c.code_dim)
        self.decoder = TaskHeads(c)

    def draw_keep(self, batch_size: int) -> torch.Tensor:
        """Kept patch positions ``[B, T]``: random per row in training; in eval mode one row drawn from a
        generator seeded by ``config.mask_seed`` and repeated for every image (:meth:`eval_keep`)."""
        if not self.training:
            return self.eval_keep().unsqueeze(0).expand(batch_size, -1).contiguous()
        return self.masking(batch_size).to(self.proj.weight.device)

    def eval_keep(self) -> torch.Tensor:
        """The eval-mode mask ``[T]``: the kept positions (ascending) drawn once from ``config.mask_seed`` and
        the current masking statistics; every image gets it, whatever its batch."""
        gen = torch.Generator().manual_seed(self.config.mask_seed)
        return self.masking(1, gen)[0].to(self.proj.weight.device)

    def _check_keep(self, keep: torch.Tensor, batch_size: int) -> torch.Tensor:
        keep = torch.as_tensor(keep, device=self.proj.weight.device).long()
        n = self.config.num_patches
        if keep.dim() == 1:
            keep = keep.unsqueeze(0).expand(batch_size, -1)
        if keep.dim() != 2 or keep.shape[0] != batch_size or keep.shape[1] < 1 or int(keep.min()) < 0 \
                or int(keep.max()) >= n or bool((keep[:, 1:] <= keep[:, :-1]).any()):
            raise ConfigError(f"invalid keep: expected strictly ascending patch positions in 0..{n - 1}, "
                              f"[T] or [B, T], got shape {tuple(keep.shape)}")
        return keep

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_e, keep)``: the encoded features ``[B, T, D]`` of the kept patches and their positions."""
        keep = self.draw_keep(x.shape[0]) if keep is None else self._check_keep(keep, x.shape[0])
        return self.proj(self.encoder(x, keep)), keep

    def logits(self, x: torch.Tensor, snr_db=None, channel=None) -> torch.Tensor:
        """Class logits ``[B, n_classes]``, differentiable with respect to ``x``."""
        if "classification" not in self.config.tasks:
            raise ConfigError("this model has no classification head (config.tasks)")
        return self(x, snr_db=snr_db, channel=channel).logits

    def classifier(self, snr_db=None, channel=None) -> LogitsModel:
        """An ``nn.Module`` whose ``forward(images)`` returns logits (for attacks and adversarial training)."""
        return LogitsModel(self, snr_db, channel)

    def _outputs(self, tokens, present, keep, features, **extra) -> RobustOutput:
        out = self.decoder(tokens, present)
        return RobustOutput(out.get("classification"), out.get("retrieval"), out.get("reconstruction"), keep,
                            features, **extra)


class MaskedVQVAE(_Base):
    """The masked VQ-VAE with FIM, orthogonal codebook and deduplication (see the module docstring); ``config`` a
    :class:`RobustConfig` of ``kind="masked-vqvae"`` (or keyword overrides)."""

    kind = "masked-vqvae"

    def __init__(self, config: RobustConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.fim = (FeatureImportance(c.num_patches, c.n_classes, c.fim_hidden, c.fim_threshold)
                    if c.use_fim else None)
        self.quantizer = VectorQuantizer(c.J, c.code_dim, c.dead_code_threshold,
                                         loss_reduction=c.vq_loss_reduction)

    @property
    def codebook(self) -> torch.Tensor:
        """The codewords ``E``, ``[J, D]``."""
        return self.quantizer.codebook

    def transmit(self, x: torch.Tensor, snr_db=None, keep: torch.Tensor | None = None) -> dict:
        """The transmitter: ``keep``, ``features`` (``z_e`` after the FIM), ``z_q`` (straight-through),
        ``indices`` ``[B, T]``, ``send`` ``[B, T]`` bool, the index ``grid`` ``[B, N]`` (-1: nothing sent),
        ``fim`` (or None) and the quantiser's ``losses``."""
        c = self.config
        snr_db = c.train_snr_db if snr_db is None else snr_db
        z_e, keep = self.encode(x, keep)
        fim = None
        candidates = None
        if self.fim is not None:
            fim = self.fim(z_e, keep, snr_db)
            z_e, candidates = fim.features, fim.keep
        z_q, idx, losses = self.quantizer(z_e)
        send = torch.ones_like(idx, dtype=torch.bool) if candidates is None else candidates
        if c.dedup_threshold < 1.0:
            send = dedup_mask(idx, codeword_similarity(self.codebook), c.dedup_threshold, send)
        grid = torch.full((x.shape[0], c.num_patches), -1, dtype=torch.long, device=idx.device)
        grid = grid.scatter(1, keep, torch.where(send, idx, torch.full_like(idx, -1)))
        return {"keep": keep, "features": z_e, "z_q": z_q, "indices": idx, "send": send, "grid": grid, "fim": fim,
                "losses": losses}

    def receive_tokens(self, received: torch.Tensor, tx: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The receiver's tokens ``[B, N, D]`` and presence mask ``[B, N]`` from a received index grid ``[B, N]``
        (int64, ``-1``: nothing). With the transmitter's ``tx`` (training, attacks) the gradient of every token
        received at a position the transmitter sent passes straight through to that token's ``z_e``."""
        c = self.config
        received = torch.as_tensor(received).long().to(self.codebook.device)
        if received.dim() != 2 or received.shape[1] != c.num_patches:
            raise ConfigError(f"invalid received indices: expected [B, {c.num_patches}], got "
                              f"{tuple(received.shape)}")
        if received.numel() and int(received.max()) >= c.J:
            raise ConfigError(f"invalid received indices: values must be -1 or in 0..{c.J - 1}")
        present = received >= 0
        tokens = self.quantizer.lookup(received.clamp_min(0))
        if tx is not None:
            b, t = tx["keep"].shape
            z = tx["features"]
            full = torch.zeros(b, c.num_patches, c.code_dim, dtype=z.dtype, device=z.device)
            full = full.scatter(1, tx["keep"].unsqueeze(-1).expand(-1, -1, c.code_dim), z)
            had = torch.zeros(b, c.num_patches, dtype=torch.bool, device=z.device).scatter(1, tx["keep"], tx["send"])
            st = full + (tokens - full).detach()
            tokens = torch.where((had & present).unsqueeze(-1), st, tokens)
        return tokens, present

    def decode_indices(self, received: torch.Tensor) -> RobustOutput:
        """The receiver alone: task outputs from a received index grid ``[B, N]`` (``-1``: nothing received)."""
        tokens, present = self.receive_tokens(received)
        empty = torch.zeros(received.shape[0], 0, dtype=torch.long)
        return self._outputs(tokens, present, empty, tokens, received=received)

    def forward(self, x: torch.Tensor, snr_db=None, channel: IndexChannel | None = None,
                keep: torch.Tensor | None = None) -> RobustOutput:
        """Transmitter, ``channel`` (identity when ``None``), receiver; ``snr_db`` feeds the FIM
        (``config.train_snr_db`` when ``None``; a number or one value per image)."""
        tx = self.transmit(x, snr_db, keep)
        received = tx["grid"] if channel is None else channel(tx["grid"])
        tokens, present = self.receive_tokens(received, tx)
        losses = dict(tx["losses"])
        losses["orthogonality"] = orthogonality_loss(self.codebook, reduction="mean")
        fim = tx["fim"]
        return self._outputs(tokens, present, tx["keep"], tx["features"], sent=tx["grid"], received=received,
                             fim_logits=None if fim is None else fim.logits,
                             fim_weights=None if fim is None else fim.weights, losses=losses)


class ViTJSCC(_Base):
    """The JSCC anchor with the same ViT (Section V-A, "modified JSCC ... with the ViT architecture"): the kept
    tokens' features, power normalised, are the channel input; ``kind="jscc"``."""

    kind = "jscc"

    @staticmethod
    def power_normalize(z: torch.Tensor) -> torch.Tensor:
        """Scale each image's latent to ``mean z^2 = 1/2``: unit average energy per complex symbol."""
        power = z.pow(2).flatten(1).mean(dim=1).clamp_min(1e-12)
        return z * torch.rsqrt(2.0 * power).reshape(-1, *([1] * (z.dim() - 1)))

    def forward(self, x: torch.Tensor, snr_db=None, channel: LatentChannel | None = None,
                keep: torch.Tensor | None = None) -> RobustOutput:
        """Transmitter, ``channel`` on the latent (noiseless when ``None``), receiver. ``snr_db`` is accepted for
        interface parity and only validated (the JSCC has no FIM)."""
        if snr_db is not None:
            snr_tensor(snr_db, x.shape[0])
        z, keep = self.encode(x, keep)
        s = self.power_normalize(z)
        r = s if channel is None else channel(s)
        c = self.config
        tokens = torch.zeros(x.shape[0], c.num_patches, c.code_dim, dtype=r.dtype, device=r.device)
        tokens = tokens.scatter(1, keep.unsqueeze(-1).expand(-1, -1, c.code_dim), r)
        present = torch.zeros(x.shape[0], c.num_patches, dtype=torch.bool, device=r.device).scatter(1, keep, True)
        return self._outputs(tokens, present, keep, s)


class LogitsModel(nn.Module):
    """``images -> logits`` of a robust model at a fixed ``snr_db`` and ``channel`` (for the attacks)."""

    def __init__(self, model: _Base, snr_db=None, channel=None):
        super().__init__()
        self.model, self.snr_db, self.channel = model, snr_db, channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x, self.snr_db, self.channel)


def build_model(config: RobustConfig) -> MaskedVQVAE | ViTJSCC:
    """The model a config describes (``config.kind``)."""
    return MaskedVQVAE(config) if config.kind == "masked-vqvae" else ViTJSCC(config)
