"""Typed, validated configuration of the robust masked VQ-VAE and its ViT JSCC anchor (issue 11, item 3).

One frozen pydantic model, :class:`RobustConfig`, is shared by :class:`semcom.robust.model.MaskedVQVAE`,
:class:`semcom.robust.model.ViTJSCC`, the loss of :mod:`semcom.robust.losses` and the trainer; it is stored as
JSON in the metadata of a weights file. :func:`robust_config` builds one and turns any validation failure into a
one-line :class:`~semcom.errors.ConfigError` naming the field (the masking ratio, the patch size, ...).

Defaults follow Section V-A of the robust paper where it gives a value (masking ratio 0.5, ``J = 256`` codewords,
8 bits per index, trained at 3 dB) and are otherwise sized to train on two CPU cores (the paper's ViT has 14 layers
and 12 heads; ours has ``depth = 2``, ``heads = 4``, width 64).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from semcom.errors import ConfigError

__all__ = ["TASKS", "RobustConfig", "Task", "check_mask_ratio", "check_pad_to", "check_patch_size", "robust_config"]

Task = Literal["classification", "retrieval", "reconstruction"]
#: The three downstream tasks of Section V (one decoder head each).
TASKS: tuple[str, ...] = ("classification", "retrieval", "reconstruction")


def check_mask_ratio(ratio) -> float:
    """The masking ratio as a float, or a one-line :class:`ConfigError` unless it is a finite number in [0, 1)
    (1 would mask every patch: nothing left to encode)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) \
            or not 0.0 <= ratio < 1.0:
        raise ConfigError(f"invalid masking ratio mask_ratio={ratio!r}: must be a number in [0, 1)")
    return float(ratio)


def check_patch_size(patch_size, height: int, width: int) -> int:
    """The patch size as an int, or a one-line :class:`ConfigError` unless it is a positive integer dividing both
    image sides (the paper uses 8 and 16 on 224x224 images; 4 and 8 fit 32x32, only 4 fits 28x28; pad a 28x28
    digit to 32x32 with ``pad_to=32`` for 8 and 16)."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ConfigError(f"invalid patch_size={patch_size!r}: must be a positive integer")
    if height % patch_size or width % patch_size:
        raise ConfigError(f"invalid patch_size={patch_size}: does not divide the {height}x{width} image "
                          f"(use a divisor of both sides, e.g. 4 or 8 for 32x32, 4 for 28x28, or pad the image "
                          f"with pad_to)")
    return patch_size


def check_pad_to(pad_to, height: int, width: int) -> int:
    """The padded side as an int (0: no padding), or a one-line :class:`ConfigError` unless it is 0 or an integer
    at least as large as both image sides."""
    if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 0:
        raise ConfigError(f"invalid pad_to={pad_to!r}: must be 0 (no padding) or a positive integer")
    if pad_to and pad_to < max(height, width):
        raise ConfigError(f"invalid pad_to={pad_to}: smaller than the {height}x{width} image")
    return pad_to


class RobustConfig(BaseModel):
    """Hyper-parameters of the robust masked VQ-VAE (Sections III-IV of the robust paper).

    * Image: ``height`` x ``width`` with ``channels`` channels, in [0, 1]; ``pad_to`` (0: off) zero-pads it,
      centred, to ``pad_to`` x ``pad_to`` before it is cut into patches (a 28x28 digit to 32x32 for patch 8 or
      16); inputs, attacks and reconstructions stay ``height`` x ``width``.
    * ViT encoder (:mod:`semcom.robust.vit`): ``patch_size`` (must divide both sides, padded), ``embed_dim``,
      ``depth``, ``heads``, ``mlp_ratio``.
    * Masking (:mod:`semcom.robust.masking`, Section III-A2): ``mask_ratio`` in [0, 1) (0.5 in the paper; the
      "reserving ratio" of Fig. 7 is ``1 - mask_ratio``), ``masking`` ``"random"`` (MAE's uniform sampling) or
      ``"noise-aware"`` (the paper's), ``noise_weight`` how far the noise statistics tilt the masking
      probabilities away from uniform (0: uniform), ``noise_statistic`` what the trainer feeds the statistics
      during adversarial training (``"gradient"``: the input-gradient magnitude of the loss at the noisy sample,
      all patches kept; ``"perturbation"``: ``|s' - s|``), ``mask_seed`` the seed of the one mask
      every image gets in eval mode.
    * Codebook (:mod:`semcom.robust.codebook`, Section III-B): ``J`` codewords (a power of two, ``log2 J`` bits
      per index) of dimension ``code_dim``; ``beta`` the commitment weight of eq. (12); ``lambda_orth`` the
      weight of the orthogonality term ``||E^T E - I||^2 / J^2`` (Section IV-B3); ``dead_code_threshold`` the
      EMA usage under which a codeword is re-seeded from the batch in training (0: never); ``vq_loss_reduction``
      how the codebook and commitment terms reduce the squared error over the ``D`` coordinates of a vector
      (``"sum"``: the squared norm, the shipped models' recipe; ``"mean"``: divided by ``D``, the usual per-element
      MSE of VQ-VAE implementations, which keeps ``beta``'s pull on the encoder independent of ``code_dim``; a
      training-time choice only: the forward pass is the same); ``dedup_threshold``
      the cosine similarity ``delta`` above which a transmitted index is dropped as a near-duplicate
      (Section IV-B1, Fig. 2b; 1.0 turns deduplication off).
    * FIM (:mod:`semcom.robust.fim`, Section IV-A): ``use_fim``, ``fim_hidden`` (width of its FC layer),
      ``fim_threshold`` (features whose importance, scaled so that uniform importance is 1, falls below it are
      not transmitted; 0 keeps all), ``lambda_fim`` the ``gamma`` of eq. (16); ``lambda_sim`` the weight of the
      similarity loss of eq. (17) (0: off).
    * Heads (Section V-A: three FC layers each): ``tasks``, ``n_classes``, ``retrieval_dim``, ``head_hidden``
      (``task_head_hidden`` for the retrieval and reconstruction heads, 0: the same);
      the task-loss weights ``w_classification``, ``w_retrieval``, ``w_reconstruction``; ``retrieval_temperature``
      of the supervised contrastive loss.
    * Channel: ``train_snr_db`` (3 dB in the paper), the SNR fed to the FIM when none is given.
    * ``kind``: ``"masked-vqvae"`` (indices travel) or ``"jscc"`` (the anchor: a power-normalised analogue latent).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    kind: Literal["masked-vqvae", "jscc"] = "masked-vqvae"
    height: int = Field(32, ge=2, le=1024)
    width: int = Field(32, ge=2, le=1024)
    channels: int = Field(3, ge=1, le=4)
    pad_to: int = Field(0, ge=0, le=4096)
    patch_size: int = Field(4, ge=1, le=256)
    embed_dim: int = Field(64, ge=4, le=1024)
    depth: int = Field(2, ge=1, le=32)
    heads: int = Field(4, ge=1, le=64)
    mlp_ratio: float = Field(2.0, gt=0.0, le=16.0)

    mask_ratio: float = 0.5
    masking: Literal["random", "noise-aware"] = "noise-aware"
    noise_weight: float = Field(0.5, ge=0.0, le=1.0)
    noise_statistic: Literal["gradient", "perturbation"] = "gradient"
    mask_seed: int = Field(0, ge=0, le=2**63 - 1)

    J: int = 256
    code_dim: int = Field(32, ge=1, le=1024)
    beta: float = Field(0.25, ge=0.0, le=100.0)
    lambda_orth: float = Field(10.0, ge=0.0, le=1e4)
    dead_code_threshold: float = Field(0.0, ge=0.0, le=1e6)
    vq_loss_reduction: Literal["sum", "mean"] = "sum"
    dedup_threshold: float = Field(1.0, ge=-1.0, le=1.0)

    use_fim: bool = True
    fim_hidden: int = Field(64, ge=1, le=4096)
    fim_threshold: float = Field(0.0, ge=0.0, le=1e6)
    lambda_fim: float = Field(0.5, ge=0.0, le=1e4)
    lambda_sim: float = Field(0.0, ge=0.0, le=1e4)

    tasks: tuple[Task, ...] = ("classification",)
    n_classes: int = Field(10, ge=2, le=100_000)
    retrieval_dim: int = Field(64, ge=2, le=4096)
    head_hidden: int = Field(256, ge=1, le=8192)
    #: Hidden width of the retrieval and reconstruction heads (0: ``head_hidden``); ``masked-vqvae-tasks+at`` uses
    #: a narrow one to keep its file small.
    task_head_hidden: int = Field(0, ge=0, le=8192)
    w_classification: float = Field(1.0, ge=0.0, le=1e4)
    w_retrieval: float = Field(1.0, ge=0.0, le=1e4)
    w_reconstruction: float = Field(1.0, ge=0.0, le=1e4)
    retrieval_temperature: float = Field(0.1, gt=0.0, le=100.0)

    train_snr_db: float = Field(3.0, ge=-50.0, le=100.0)

    @field_validator("mask_ratio", mode="before")
    @classmethod
    def _mask_ratio(cls, v):
        return check_mask_ratio(v)

    @field_validator("J")
    @classmethod
    def _codebook_size(cls, v: int) -> int:
        if not 2 <= v <= 65536 or v & (v - 1):
            raise ValueError("codebook size J must be a power of two in 2..65536 (log2 J bits per index)")
        return v

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError("tasks must name at least one task, each once")
        return tuple(t for t in TASKS if t in v)  # canonical order

    @model_validator(mode="after")
    def _shapes(self):
        check_pad_to(self.pad_to, self.height, self.width)
        check_patch_size(self.patch_size, *self.padded)
        if self.embed_dim % self.heads:
            raise ConfigError(f"invalid heads={self.heads}: must divide embed_dim={self.embed_dim}")
        return self

    # ------------------------------------------------------------------ derived sizes

    @property
    def padded(self) -> tuple[int, int]:
        """The sides the patches are cut from: ``(pad_to, pad_to)``, or ``(height, width)`` without padding."""
        return (self.pad_to, self.pad_to) if self.pad_to else (self.height, self.width)

    @property
    def grid(self) -> tuple[int, int]:
        """Patches along each side, ``(H / P, W / P)`` of the padded image."""
        h, w = self.padded
        return h // self.patch_size, w // self.patch_size

    @property
    def num_patches(self) -> int:
        """``N = HW / P^2``, the patches of one image (14 x 14 = 196 in the paper)."""
        gh, gw = self.grid
        return gh * gw

    @property
    def num_keep(self) -> int:
        """Patches the encoder sees: ``round(N (1 - mask_ratio))``, at least one."""
        return max(1, int(round(self.num_patches * (1.0 - self.mask_ratio))))

    @property
    def bits_per_index(self) -> int:
        """``J_c = log2 J`` (Table I: 8 bits for ``J = 256``)."""
        return int(math.log2(self.J))

    def symbols_per_image(self, bits_per_symbol: int = 4, code_rate: float = 1.0) -> float:
        """Channel symbols for one image's indices: ``T J_c / (B_s R_c)``, Section V-B's ``L H J_c M_r /
        (P_a^2 B_s)`` with the ``T`` patches actually sent (``= N M_r`` at the paper's ratio 0.5; ``N (1 - M_r)``
        in general). The paper's Table I leaves the code rate out (``code_rate=1``: 196 symbols for 224x224,
        patch 16, 16-QAM); pass 0.5 to count the LDPC code of Section V-A. Deduplication and the FIM threshold
        send fewer (:attr:`semcom.robust.model.RobustOutput.indices_sent`)."""
        return self.num_keep * self.bits_per_index / (bits_per_symbol * code_rate)


def robust_config(**values) -> RobustConfig:
    """Build a :class:`RobustConfig`, turning a validation failure into a one-line :class:`ConfigError` naming
    the field and the value."""
    try:
        return RobustConfig(**values)
    except ConfigError:
        raise
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            raise ConfigError(str(cause)) from None
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            raise ConfigError(f"invalid RobustConfig: {msg}") from None
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid {field}={err.get('input')!r}: {msg}") from None
