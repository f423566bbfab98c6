"""The grounded codebook paper's figures, reproduced (issue 10, items 2-4): ``codebook-fig4`` (PSNR against
SNR), ``codebook-fig3`` (the perceptual metric against SNR), ``codebook-j`` (distortion and PSNR against the
codebook size) and ``codebook-theory`` (eqs. 16-20 against Monte Carlo).

**Test images.** 64x64 views (crops at random scales, :func:`semcom.training.codec.validation_views`) of the
photos the content regimes are built from (:data:`~semcom.sources.photos.REGIME_PHOTOS`): none of them is in
the codebook models' training or validation split.

**Schemes over the same channel** (64-QAM, flat Rayleigh fading with a new gain every symbol and perfect-CSI
equalisation, ``E_s/N_0`` = the SNR; :mod:`semcom.phy`, Sionna blocks):

* the four VQ-VAE variants (``vqvae``, ``vqvae+entropy``, ``vqvae+channel``, ``proposed``): the index labels go
  through :class:`semcom.schemes.codebook.IndexAirLink` uncoded (``code="none"``, the default, as the paper's
  channel-aware loss assumes bit flips) or with 5G LDPC at rate 1/2 (``code="ldpc-1/2"``); the receiver decodes
  whatever indices arrive;
* ``jpeg+ldpc`` (Pillow JPEG) and ``bpg+ldpc``: each image file is one packet over
  :class:`semcom.phy.link.DigitalLink` (CRC24A per codeword, 5G LDPC rate 1/2). BPG (HEVC intra in its own
  container) is not installable here; it is stood in for by HEVC intra from libx265 through PyAV (one-frame
  Annex-B stream, :mod:`semcom.anchors.codecs`). **Failure rule:** a packet whose CRC fails anywhere is lost;
  the receiver then has no image and shows mid-grey (128); a packet that arrives intact is decoded. Such an
  image counts in ``failed_fraction`` and is scored as shown.

PSNR is the mean over images of each image's PSNR; MS-SSIM the mean over images (three scales at 64x64,
:func:`semcom.metrics.ms_ssim`). LPIPS needs a VGG16 backbone (and its linear layers), which cannot be
downloaded here: with ``--lpips-vgg16 FILE`` (and ``--lpips-lin FILE``) it is computed
(:class:`semcom.metrics.lpips.LPIPS`) and Fig. 3 plots it; otherwise ``lpips`` is ``null`` and Fig. 3 plots
MS-SSIM, saying so on the figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from semcom.errors import ConfigError

__all__ = ["CodebookReproConfig", "PAPER", "SCHEMES", "figure_fig3", "figure_fig4", "figure_j", "figure_theory",
           "run_fig4", "run_j", "run_theory", "test_images"]

#: The schemes of Figs. 3-4, in the paper's legend order.
SCHEMES = ("vqvae", "vqvae+entropy", "vqvae+channel", "proposed", "jpeg+ldpc", "bpg+ldpc")
#: The paper's own numbers (its text; the figures' values were not extracted).
PAPER = {"psnr_gain_pct_at_10db": 24.1, "lpips_gain_pct_at_10db": 46.5, "snr_db": 10.0,
         "modulation": "qam64", "channel": "rayleigh", "anchor_code": "ldpc-1/2"}
#: Settings of the classical anchors: the fewest bits each reaches on a 64x64 image (JPEG's headers alone are
#: about 2,400 bits; HEVC intra at its largest quantiser about 900), the nearest they come to the codebook's 512
#: bits per image. Their bits per image are reported beside them.
JPEG_QUALITY = 5
HEVC_CRF = 51

Progress = Callable[[str], None] | None


def _snrs(values) -> tuple[float, ...]:
    vals = tuple(values)
    if not vals:
        raise ConfigError("invalid snr list: give at least one SNR (dB)")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not -20 <= v <= 60:
            raise ConfigError(f"invalid snr list: {v!r} is not a finite SNR in -20..60 dB")
    return tuple(float(v) for v in vals)


@dataclass(frozen=True)
class CodebookReproConfig:
    """What the codebook reproductions sweep (``quick()``: fewer images, SNRs, sizes and trials)."""

    snrs: tuple[float, ...] = tuple(float(s) for s in range(0, 21, 2))
    images: int = 48
    trials: int = 4
    code: str = "none"
    Js: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
    ps: tuple[float, ...] = (0.0, 0.01, 0.05, 0.2)
    mu: float = 0.0
    seed: int = 0
    fit_vectors: int = 20000
    lpips_vgg16: str | None = None
    lpips_lin: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "snrs", _snrs(self.snrs))
        if self.code not in ("none", "ldpc-1/2"):
            raise ConfigError(f"invalid code: choose 'none' or 'ldpc-1/2', got {self.code!r}")
        from semcom.quantization.codebook import check_codebook_size, check_flip_probability

        for J in self.Js:
            check_codebook_size(J)
        for p in self.ps:
            check_flip_probability(p)
        if isinstance(self.mu, bool) or not isinstance(self.mu, (int, float)) or not math.isfinite(self.mu) \
                or self.mu < 0:
            raise ConfigError(f"invalid mu: the bandwidth weight of eq. (21) must be finite and >= 0, got {self.mu!r}")

    @classmethod
    def quick(cls, seed: int = 0, **kw) -> CodebookReproConfig:
        base = {"snrs": (0.0, 5.0, 10.0, 15.0, 20.0), "images": 12, "trials": 2, "Js": (16, 64, 256, 1024),
                "ps": (0.0, 0.05, 0.2), "fit_vectors": 6000, "seed": seed}
        return cls(**(base | kw))


def test_images(n: int, seed: int = 7, size: int = 64) -> np.ndarray:
    """``n`` views (uint8 ``[n, size, size, 3]``) of the regime photos: images the models never trained on."""
    from semcom.frames import to_uint8
    from semcom.sources.photos import REGIME_PHOTOS, load_photo
    from semcom.training.codec import validation_views

    return to_uint8(validation_views([load_photo(p) for p in REGIME_PHOTOS], n, size, seed=seed))


def _scores(ref: np.ndarray, shown: np.ndarray, lpips=None) -> tuple[float, ...]:
    """Mean per-image PSNR, MS-SSIM and (with an :class:`~semcom.metrics.lpips.LPIPS`) LPIPS, else ``None``."""
    from semcom.metrics import ms_ssim
    from semcom.metrics.image import psnr_per_frame

    return (float(np.mean(psnr_per_frame(ref, shown))), float(ms_ssim(ref, shown)),
            None if lpips is None else lpips.score(ref, shown))


def _lpips(cfg: CodebookReproConfig):
    if cfg.lpips_vgg16 is None:
        if cfg.lpips_lin is not None:
            raise ConfigError("--lpips-lin needs --lpips-vgg16 (the backbone it calibrates)")
        return None
    from semcom.metrics.lpips import LPIPS

    return LPIPS(cfg.lpips_vgg16, cfg.lpips_lin)


def _mean(values) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


# ====================================================================== Figs. 3-4


def _vq_codebook(variant: str, images: np.ndarray, lpips=None) -> tuple[dict, torch.Tensor]:
    """The variant's codebook row (error-free scores, index entropy, codewords used, training time) and the
    indices of ``images``."""
    from semcom.schemes.codebook import CodebookReceiver, CodebookTransmitter

    model = _variant(variant)
    idx = CodebookTransmitter(model).indices(images)
    p, s, lp = _scores(images, CodebookReceiver(model).frames(idx), lpips)
    return {"scheme": variant, "J": model.J, "psnr_db_error_free": p, "ms_ssim_error_free": s,
            "lpips_error_free": lp, **model.usage(idx), "train_seconds": _float(model.metadata.get("train_seconds")),
            "reconstruction": model.metadata.get("reconstruction")}, idx


def _vq_row(variant: str, idx, images: np.ndarray, cfg: CodebookReproConfig, snr: float, seed: int,
            lpips=None) -> dict:
    """The variant's row at ``snr`` dB: ``cfg.trials`` sends of the indices over a link seeded by ``seed``."""
    from semcom.schemes.codebook import CodebookReceiver, IndexAirLink

    model = _variant(variant)
    rx = CodebookReceiver(model)
    air = IndexAirLink(model.J, seed=seed, code=cfg.code)
    scores, uses = [], 0
    for _ in range(cfg.trials):
        got, uses = air.send(idx, snr)
        scores.append(_scores(images, rx.frames(got), lpips))
    ps, ss, ls = zip(*scores)
    return {"scheme": variant, "code": cfg.code, "snr_db": snr, "psnr_db": float(np.mean(ps)),
            "ms_ssim": float(np.mean(ss)), "lpips": _mean(ls), "bits_per_image": model.bits_per_image,
            "channel_uses_per_image": uses / len(images), "failed_fraction": 0.0}


_VARIANTS: dict = {}


def _variant(variant: str):
    """The shipped ``variant``, loaded once per process (sweep cells of one worker share it)."""
    from semcom.schemes.codebook import load_variant

    if variant not in _VARIANTS:
        _VARIANTS[variant] = load_variant(variant)
    return _VARIANTS[variant]


def _anchor_files(scheme: str, images: np.ndarray) -> tuple[list[bytes], np.ndarray, dict]:
    """Each image's file and what an intact file decodes to."""
    from semcom.anchors.codecs import get_codec

    codec, q = (get_codec("jpeg"), JPEG_QUALITY) if scheme == "jpeg+ldpc" else (get_codec("hevc"), HEVC_CRF)
    files, decoded = [], []
    for im in images:
        clip = codec.encode(im[None], q)
        files.append(clip.data[0])
        decoded.append(clip.decoded[0])
    setting = {"jpeg_quality": q} if scheme == "jpeg+ldpc" else {"hevc_crf": q, "encoder": "libx265"}
    return files, np.stack(decoded), setting


def _anchor_row(scheme: str, anchor: tuple, images: np.ndarray, cfg: CodebookReproConfig, snr: float, seed: int,
                lpips=None) -> dict:
    """The anchor's row at ``snr`` dB: ``cfg.trials`` sends of its files over a link seeded by ``seed``."""
    from semcom.phy.link import DigitalLink

    files, decoded, setting = anchor
    link = DigitalLink(modulation="qam64", channel="rayleigh", code="ldpc-1/2", coherence_symbols=1, seed=seed)
    grey = np.full_like(images[0], 128)
    scores, failed, uses = [], 0, 0
    for _ in range(cfg.trials):
        res = link.transmit(files, snr_db=snr)
        uses = res.channel_uses
        shown = [decoded[i] if got == files[i] else grey for i, got in enumerate(res.packets)]
        failed += sum(got != files[i] for i, got in enumerate(res.packets))
        scores.append(_scores(images, np.stack(shown), lpips))
    ps, ss, ls = zip(*scores)
    return {"scheme": scheme, "code": "ldpc-1/2", "snr_db": snr, "psnr_db": float(np.mean(ps)),
            "ms_ssim": float(np.mean(ss)), "lpips": _mean(ls),
            "bits_per_image": 8 * sum(len(f) for f in files) / len(files),
            "channel_uses_per_image": uses / len(files),
            "failed_fraction": failed / (cfg.trials * len(files)), **setting}


def fig4_cell(context: tuple, cell: tuple[str, float], seed: int) -> dict:
    """One row of Figs. 3-4: ``cell = (scheme, snr)``, its channel seeded by ``seed``
    (:func:`semcom.sweeps.cell_seed` of the run's seed and the cell)."""
    cfg, images, prepared, lpips = context
    scheme, snr = cell
    if scheme in SCHEMES[:4]:
        return _vq_row(scheme, prepared[scheme], images, cfg, snr, seed, lpips)
    return _anchor_row(scheme, prepared[scheme], images, cfg, snr, seed, lpips)


def run_fig4(cfg: CodebookReproConfig, progress: Progress = None, strategy=None) -> dict:
    """Every scheme at every SNR (the rows of ``codebook-fig4 --json``), the error-free ceiling of each VQ
    variant with its ``index_entropy_bits`` and ``used_codewords``, and the paper's headline comparison at
    10 dB (when 10 dB is in the sweep). Each (scheme, SNR) is a cell of :func:`semcom.sweeps.map_cells`
    (``strategy``: serial, or Dask workers)."""
    from semcom.sweeps import map_cells

    lpips = _lpips(cfg)
    images = test_images(cfg.images, seed=7 + cfg.seed)
    codebooks, prepared = [], {}
    for variant in SCHEMES[:4]:
        codebook, prepared[variant] = _vq_codebook(variant, images, lpips)
        codebooks.append(codebook)
    for scheme in SCHEMES[4:]:
        prepared[scheme] = _anchor_files(scheme, images)
    cells = fig4_cells(cfg)
    rows = map_cells(fig4_cell, cells, (cfg, images, prepared, lpips), cfg.seed, progress, strategy)
    return {"rows": rows, "codebooks": codebooks, "headline": headline(rows), "paper": PAPER,
            "lpips_variant": None if lpips is None else lpips.variant,
            "images": {"count": len(images), "source": "64x64 views of the regime photos (never trained on)"},
            "channel": {"modulation": "qam64", "channel": "rayleigh", "coherence_symbols": 1,
                        "vq_code": cfg.code, "anchor_code": "ldpc-1/2"}}


def fig4_cells(cfg: CodebookReproConfig) -> list[tuple[str, float]]:
    """``(scheme, snr)`` for every scheme and SNR."""
    return [(scheme, snr) for scheme in SCHEMES for snr in cfg.snrs]


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def headline(rows: Sequence[dict], snr_db: float = 10.0) -> dict | None:
    """The paper's claim in our numbers: the proposed codebook's PSNR and MS-SSIM gains over the plain VQ-VAE
    at ``snr_db`` (percent, as the paper states its +24.1 % PSNR), and the channel-aware variant's gain."""
    at = {r["scheme"]: r for r in rows if abs(r["snr_db"] - snr_db) < 1e-9}
    if "vqvae" not in at or "proposed" not in at:
        return None
    base = at["vqvae"]

    def gain(scheme: str, key: str) -> float:
        return 100.0 * (at[scheme][key] - base[key]) / abs(base[key])

    lpips_gain = None
    if base["lpips"] is not None and at["proposed"]["lpips"] is not None and base["lpips"] > 0:
        lpips_gain = 100.0 * (base["lpips"] - at["proposed"]["lpips"]) / base["lpips"]  # lower is better
    return {"snr_db": snr_db, "psnr_gain_pct": gain("proposed", "psnr_db"),
            "ms_ssim_gain_pct": gain("proposed", "ms_ssim"), "lpips_gain_pct": lpips_gain,
            "channel_aware_psnr_gain_pct": gain("vqvae+channel", "psnr_db"),
            "entropy_psnr_gain_pct": gain("vqvae+entropy", "psnr_db"),
            "psnr_db": {s: r["psnr_db"] for s, r in at.items()}}


def _curves(res: dict, key: str, ylabel: str, title: str, out: Path, name: str) -> list[Path]:
    from semcom.report.figures import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = {"vqvae": "o-", "vqvae+entropy": "s-", "vqvae+channel": "^-", "proposed": "D-",
              "jpeg+ldpc": "x--", "bpg+ldpc": "+--"}
    for scheme in SCHEMES:
        sel = sorted((r for r in res["rows"] if r["scheme"] == scheme), key=lambda r: r["snr_db"])
        if sel:
            label = (f"{scheme} ({sel[0]['bits_per_image']:.0f} bits, "
                     f"{sel[0]['channel_uses_per_image']:.0f} channel uses per image)")
            ax.plot([r["snr_db"] for r in sel], [r[key] for r in sel], styles[scheme], label=label, ms=4)
    ax.set_xlabel("SNR E_s/N_0 (dB), 64-QAM, Rayleigh")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return [save_figure(fig, out / name)]


def figure_fig4(res: dict, out: Path) -> list[Path]:
    return _curves(res, "psnr_db", "PSNR (dB)", "Fig. 4: PSNR against SNR (images never trained on)", out,
                   "codebook_fig4.png")


def figure_fig3(res: dict, out: Path) -> list[Path]:
    if res.get("lpips_variant"):
        return _curves(res, "lpips", f"LPIPS ({res['lpips_variant']}, lower is better)",
                       "Fig. 3: LPIPS against SNR (images never trained on)", out, "codebook_fig3.png")
    return _curves(res, "ms_ssim", "MS-SSIM (no LPIPS weights given: MS-SSIM instead)",
                   "Fig. 3: perceptual quality against SNR; MS-SSIM stands in for LPIPS", out, "codebook_fig3.png")


# ====================================================================== optimal J (eq. 21)


def _latents(model, images: np.ndarray) -> torch.Tensor:
    from semcom.frames import to_tensor

    with torch.no_grad():
        z = torch.cat([model.encode(to_tensor(images[i:i + 64])) for i in range(0, len(images), 64)])
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def _kmeans_codebook(train_z: torch.Tensor, J: int, seed: int) -> torch.Tensor:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=J, n_init=1, max_iter=50, random_state=seed).fit(train_z.double().numpy())
    return torch.from_numpy(km.cluster_centers_).float()


def run_j(cfg: CodebookReproConfig, progress: Progress = None, strategy=None) -> dict:
    """Eq. (21) by theory and by measurement. For each ``J``, a codebook is fitted by k-means (scikit-learn) to
    the latents of the shipped ``vqvae`` variant's encoder on training-photo crops; its decoder is kept. On test
    images: ``D_q`` (20) measured, ``D_ch`` by eqs. (18)-(19) (theory, with the exact P(k|i) of (17) and the
    test index frequencies) and by Monte Carlo over a BSC(p) (measured: the mean ``||z - e_k||^2`` of the
    codeword that arrives), PSNR of the decoded images under those flips, and ``J*`` per ``p`` by eq. (21) with
    bandwidth weight ``mu`` from both distortions. Each ``J`` is a cell of :func:`semcom.sweeps.map_cells`
    (``strategy``: serial, or Dask workers), its flips drawn from its own seed."""
    from semcom.frames import to_uint8
    from semcom.quantization.codebook import optimal_codebook_size
    from semcom.sources.photos import TRAIN_PHOTOS, load_photo
    from semcom.sweeps import map_cells
    from semcom.training.codec import validation_views

    model = _variant("vqvae")
    gen = torch.Generator().manual_seed(cfg.seed)
    train = to_uint8(validation_views([load_photo(p) for p in TRAIN_PHOTOS], 512, 64, seed=99 + cfg.seed))
    train_z = _latents(model, train)
    train_z = train_z[torch.randperm(len(train_z), generator=gen)[:cfg.fit_vectors]]
    images = test_images(cfg.images, seed=7 + cfg.seed)
    z = _latents(model, images)
    rows = [r for got in map_cells(j_cell, list(cfg.Js), (cfg, train_z, images, z), cfg.seed, progress, strategy)
            for r in got]
    for p in cfg.ps:
        sel = [r for r in rows if r["p"] == p]
        rate = {r["J"]: r["bits_per_image"] for r in sel}
        best = optimal_codebook_size({r["J"]: r["distortion_theory"] for r in sel}, rate, cfg.mu)
        best_m = optimal_codebook_size({r["J"]: r["distortion_measured"] for r in sel}, rate, cfg.mu)
        for r in sel:
            r["optimal"], r["optimal_measured"] = r["J"] == best, r["J"] == best_m
    return {"rows": rows, "mu": cfg.mu, "model": "vqvae (encoder and decoder; k-means codebooks per J)",
            "fit_vectors": len(train_z), "test_images": len(images)}


def j_cell(context: tuple, J: int, seed: int) -> list[dict]:
    """The rows of one codebook size ``J`` (one per ``p``); the bit flips are drawn from ``seed``."""
    from semcom.frames import to_uint8
    from semcom.quantization.codebook import (
        binary_labels,
        channel_distortion,
        nearest_indices,
        quantization_distortion,
        rate_bits_per_image,
    )

    cfg, train_z, images, z = context
    model = _variant("vqvae")
    gen = torch.Generator().manual_seed(seed)
    per_image = z.shape[0] // len(images)
    codebook = _kmeans_codebook(train_z, J, cfg.seed)
    idx = nearest_indices(z, codebook)
    probs = torch.bincount(idx, minlength=J).double() / idx.numel()
    d_q = quantization_distortion(z, codebook)
    labels = binary_labels(J)
    weights = 1 << torch.arange(labels.shape[1] - 1, -1, -1)
    rows = []
    for p in cfg.ps:
        d_ch = channel_distortion(codebook, probs, p)
        sq, ps = [], []
        for _ in range(cfg.trials):
            flips = (torch.rand(labels[idx].shape, generator=gen) < p).long()
            got = ((labels[idx] ^ flips) * weights).sum(-1)
            sq.append(float((z - codebook[got]).pow(2).sum(-1).double().mean()))
            zq = codebook[got].reshape(len(images), 8, 8, -1).permute(0, 3, 1, 2)
            with torch.no_grad():
                shown = to_uint8((model.g_s(zq) * 0.5 + 0.5).clamp(0, 1))
            ps.append(_scores(images, shown)[0])
        rows.append({"J": J, "p": p, "bits_per_image": rate_bits_per_image(J, per_image),
                     "distortion_q": d_q, "distortion_ch_theory": d_ch,
                     "distortion_theory": d_q + d_ch, "distortion_measured": float(np.mean(sq)),
                     "psnr_db": float(np.mean(ps)), "optimal": False, "optimal_measured": False})
    return rows


def figure_j(res: dict, out: Path) -> list[Path]:
    from semcom.report.figures import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for p in dict.fromkeys(r["p"] for r in res["rows"]):
        sel = [r for r in res["rows"] if r["p"] == p]
        js = [r["J"] for r in sel]
        line = axes[0].plot(js, [r["distortion_theory"] for r in sel], "-", label=f"p={p:g} theory (20)")[0]
        axes[0].plot(js, [r["distortion_measured"] for r in sel], "o", color=line.get_color(),
                     label=f"p={p:g} measured")
        opt = [r for r in sel if r["optimal"]]
        axes[0].plot([r["J"] for r in opt], [r["distortion_theory"] for r in opt], "*", ms=14,
                     color=line.get_color())
        axes[1].plot(js, [r["psnr_db"] for r in sel], "o-", color=line.get_color(), label=f"p={p:g}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("codebook size J")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("distortion D = D_q + D_ch (latent units)")
    axes[0].set_title(f"eq. (20)-(21); star: J* (mu={res['mu']:g})", fontsize=9)
    axes[1].set_ylabel("PSNR (dB)")
    axes[1].set_title("PSNR of the decoded test images under BSC(p)", fontsize=9)
    return [save_figure(fig, out / "codebook_j.png")]


# ====================================================================== theory (eqs. 16-20)


def run_theory(cfg: CodebookReproConfig, progress: Progress = None, strategy=None) -> dict:
    """Eqs. (16)-(20) against Monte Carlo. ``index_error``: ``P_e = 1 - (1-p)^n`` (16) against the measured
    fraction of labels that arrive wrong, for ``n`` in 4..12. ``transition``: the exact ``P(k|i)`` of (17) and
    its random-labelling form against the measured transition frequencies (total variation distance per row,
    mean over rows), for J = 16. ``distortion``: ``D_ch`` (18)-(19) and ``D = D_q + D_ch`` (20) of each shipped
    variant's trained codebook against Monte Carlo over a BSC(p) on test images, both labellings. Cells of
    :func:`semcom.sweeps.map_cells` (``strategy``: serial, or Dask workers): eqs. (16)-(17), then one per
    variant, each drawing from its own seed."""
    from semcom.sweeps import map_cells

    images = test_images(cfg.images, seed=7 + cfg.seed)
    cells = ["eqs. 16-17", *SCHEMES[:4]]
    got = map_cells(theory_cell, cells, (cfg, images), cfg.seed, progress, strategy)
    index_rows, trans_rows = got[0]
    return {"index_error": index_rows, "transition": trans_rows, "distortion": [r for g in got[1:] for r in g]}


def theory_cell(context: tuple, cell: str, seed: int):
    """``"eqs. 16-17"``: the index error and transition rows; a variant's name: its distortion rows. Draws
    from a generator seeded by ``seed``."""
    from semcom.quantization.codebook import (
        binary_labels,
        channel_distortion,
        index_error_probability,
        monte_carlo_channel_distortion,
        nearest_indices,
        quantization_distortion,
        transition_matrix,
        transition_matrix_random_labelling,
    )

    cfg, images = context
    gen = torch.Generator().manual_seed(seed)
    samples = 20000 if cfg.trials > 2 else 5000
    ps = [p for p in cfg.ps if p > 0] or [0.05]
    if cell == "eqs. 16-17":
        index_rows = []
        for n in (4, 6, 8, 10, 12):
            for p in ps:
                wrong = (torch.rand(samples, n, generator=gen) < p).any(-1).double().mean()
                pe = index_error_probability(n, p)
                index_rows.append({"n": n, "p": p, "pe_theory": pe, "pe_measured": float(wrong),
                                   "stderr": math.sqrt(pe * (1 - pe) / samples)})
        J = 16
        labels = binary_labels(J)
        trans_rows = []
        for p in ps:
            sent = torch.randint(J, (samples,), generator=gen)
            flips = (torch.rand(samples, labels.shape[1], generator=gen) < p).long()
            got = ((labels[sent] ^ flips) * (1 << torch.arange(labels.shape[1] - 1, -1, -1))).sum(-1)
            counts = torch.zeros(J, J, dtype=torch.float64)
            counts.index_put_((sent, got), torch.ones(samples, dtype=torch.float64), accumulate=True)
            freq = counts / counts.sum(1, keepdim=True).clamp_min(1)
            exact, rand = transition_matrix(J, p), transition_matrix_random_labelling(J, p)
            trans_rows.append({"J": J, "p": p, "tv_exact": float(0.5 * (freq - exact).abs().sum(1).mean()),
                               "tv_random_labelling": float(0.5 * (freq - rand).abs().sum(1).mean()),
                               "samples": samples})
        return index_rows, trans_rows
    model = _variant(cell)
    z = _latents(model, images)
    codebook = model.codebook.detach()
    idx = nearest_indices(z, codebook)
    probs = torch.bincount(idx, minlength=model.J).double() / idx.numel()
    d_q = quantization_distortion(z, codebook)
    rows = []
    for p in ps:
        mc = monte_carlo_channel_distortion(codebook, idx, p, trials=max(4, cfg.trials * 4), generator=gen)
        rows.append({"scheme": cell, "J": model.J, "p": p, "distortion_q": d_q,
                     "distortion_ch_exact": channel_distortion(codebook, probs, p, exact=True),
                     "distortion_ch_random_labelling": channel_distortion(codebook, probs, p, exact=False),
                     "distortion_ch_measured": mc.mean, "stderr": mc.stderr,
                     "distortion_total_theory": d_q + channel_distortion(codebook, probs, p, exact=True)})
    return rows


def figure_theory(res: dict, out: Path) -> list[Path]:
    from semcom.report.figures import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for p in dict.fromkeys(r["p"] for r in res["index_error"]):
        sel = [r for r in res["index_error"] if r["p"] == p]
        line = axes[0].plot([r["n"] for r in sel], [r["pe_theory"] for r in sel], "-", label=f"p={p:g} (16)")[0]
        axes[0].plot([r["n"] for r in sel], [r["pe_measured"] for r in sel], "o", color=line.get_color())
    axes[0].set_xlabel("bits per index n")
    axes[0].set_ylabel("index error probability P_e")
    axes[0].set_title("eq. (16): line theory, dots Monte Carlo", fontsize=9)
    rows = res["distortion"]
    x = np.arange(len(rows))
    axes[1].bar(x - 0.2, [r["distortion_ch_exact"] for r in rows], 0.4, label="D_ch, eqs. (17)-(19)")
    axes[1].bar(x + 0.2, [r["distortion_ch_measured"] for r in rows], 0.4, label="D_ch, Monte Carlo")
    axes[1].set_xticks(x, [f"{r['scheme']}\np={r['p']:g}" for r in rows], fontsize=6, rotation=60)
    axes[1].set_ylabel("channel-induced distortion")
    axes[1].set_title("trained codebooks: theory against Monte Carlo", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return [save_figure(fig, out / "codebook_theory.png")]
