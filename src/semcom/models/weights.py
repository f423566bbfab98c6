"""Loading and saving autoencoder weights with safetensors (no pickle).

The shipped weights live in ``semcom/models/weights/``; ``semcom train``
reproduces them. A weights file carries its hyper-parameters as metadata and
is identified on the wire by a 4-byte fingerprint of its tensors.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from semcom.errors import WeightsError
from semcom.models.autoencoder import SphericalAutoencoder

SHIPPED = "ae64_d64.safetensors"


def shipped_weights_path() -> Path:
    """Path of the weights that ship inside the package."""
    return Path(str(resources.files("semcom.models") / "weights" / SHIPPED))


def fingerprint(model: SphericalAutoencoder) -> bytes:
    """4-byte SHA-256 fingerprint of the model's tensors, sent in the stream header."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    return h.digest()[:4]


def save_autoencoder(model: SphericalAutoencoder, path: str | Path, half: bool = True, **metadata) -> Path:
    """Save ``model`` to ``path`` (float16 by default: half the size, same decoded frames); extra
    ``metadata`` (provenance such as the training algorithm) is stored beside the hyper-parameters."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().cpu().to(dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {k: str(v) for k, v in model.hparams.items()} | {k: str(v) for k, v in metadata.items()}
    save_file(tensors, str(path), metadata=meta)
    return path


def read_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The metadata and the tensor shapes of the safetensors file ``path``, without reading a tensor; a one-line
    :class:`~semcom.errors.WeightsError` naming the file when it is missing or unreadable."""
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, ValueError, OSError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None


def json_field(path: Path, meta: dict[str, str], key: str) -> dict:
    """The JSON object stored under ``key`` in a weights file's metadata; a one-line
    :class:`~semcom.errors.WeightsError` naming the file when it is missing or not an object."""
    try:
        value = json.loads(meta[key])
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    if not isinstance(value, dict):
        raise WeightsError(f"cannot read weights {path}: {key} is not an object")
    return value


def check_shapes(path: Path, shapes: dict[str, tuple[int, ...]], build, what: str) -> None:
    """Refuse tensors whose names or shapes are not those of ``build()``'s state dict (built on the meta device:
    shapes only, nothing allocated); ``what`` completes "do not fit the ..." in the error."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    if shapes != expected:
        bad = sorted(set(shapes) ^ set(expected)) or sorted(k for k in shapes if shapes[k] != expected[k])
        raise WeightsError(f"weights {path} do not fit the {what} describes (tensor {bad[0]})")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``path`` (after :func:`read_header` and :func:`check_shapes` have bounded them); a file
    holding NaN or infinity is refused."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, ValueError, OSError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
        raise WeightsError(f"weights {path} hold non-finite values")
    return tensors


#: Bounds on the hyper-parameters a weights file may declare: ``d`` as a stream header can carry it
#: (semcom.config.LinkConfig), frame sides as a header can carry them, multiples of 16.
HPARAM_LIMITS = {"d": (1, 4096), "height": (16, 4096), "width": (16, 4096), "base": (1, 1024)}


def _check_hparams(path: Path, hparams: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse hyper-parameters out of range, or tensors whose shapes are not the ones they imply, before
    anything is allocated (the model is built on the meta device: shapes only)."""
    for k, (lo, hi) in HPARAM_LIMITS.items():
        if not lo <= hparams[k] <= hi:
            raise WeightsError(f"weights {path} declare {k}={hparams[k]}, outside {lo}..{hi}")
    for k in ("height", "width"):
        if hparams[k] % 16:
            raise WeightsError(f"weights {path} declare {k}={hparams[k]}, not a multiple of 16")
    check_shapes(path, shapes, lambda: SphericalAutoencoder(**hparams), "autoencoder their metadata")


def load_autoencoder(path: str | Path | None = None) -> SphericalAutoencoder:
    """Load an autoencoder from ``path`` (default: the shipped weights), in float32, eval mode.

    The metadata's hyper-parameters are checked against :data:`HPARAM_LIMITS` and the tensors' shapes
    before any tensor is read, so a file cannot make this allocate more than its own size (twice, in
    float32) plus the model."""
    path = Path(path) if path is not None else shipped_weights_path()
    meta, shapes = read_header(path)
    try:
        hparams = {k: int(meta[k]) for k in ("d", "height", "width", "base")}
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    _check_hparams(path, hparams, shapes)
    tensors = read_tensors(path)
    model = SphericalAutoencoder(**hparams)
    try:
        model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    except RuntimeError as exc:
        raise WeightsError(f"weights {path} do not fit the autoencoder: {str(exc).splitlines()[0]}") from None
    from semcom.models.device import place

    return place(model.eval().requires_grad_(False))  # on the --device of the command (semcom.models.device)
