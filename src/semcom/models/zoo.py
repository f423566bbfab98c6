"""The model zoo: models by name and quality, as ``--model NAME --quality Q`` (CompressAI's convention).

Two tables and one loader (CompressAI's ``zoo/image.py``, without its per-architecture wrappers):
:data:`MODELS` maps a name to what it is, where its shipped weights live and how many quality levels
it has; :func:`load_model` checks the name and quality, loads the weights (the shipped file or a
path the user gives) and returns a :class:`ZooModel`.

* ``sphere64`` — the Hopfield paper's spherical autoencoder, one unit-norm latent of d = 64 per frame
  (one quality level); the Hopfield reproduction runs on it.
* ``hyperprior`` — a spatial latent (8x8x64 per 64x64 frame) with a scale hyperprior and conditional
  coding against the memory, eight quality levels from one set of weights
  (:mod:`semcom.models.hyperprior`); trained on photos no content regime uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from semcom.errors import ConfigError, WeightsError


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: its id on the wire, kind, shipped weights file and quality levels."""

    name: str
    wire_id: int
    kind: str  # "sphere" (one unit latent per frame) or "spatial" (a latent grid with an entropy model)
    weights: str
    qualities: int
    description: str
    default_quality: int = 1


MODELS: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("sphere64", 0, "sphere", "ae64_d64.safetensors", 1,
             "the Hopfield paper's spherical autoencoder, d = 64"),
    ZooEntry("hyperprior", 1, "spatial", "hyperprior_q8.safetensors", 8,
             "spatial latent 8x8x64, scale hyperprior, conditional coding, 8 qualities", default_quality=4),
)}
DEFAULT_MODEL = "hyperprior"


def entry(name: str) -> ZooEntry:
    """The registered model ``name``; an unknown name is a one-line error listing the valid ones."""
    if name not in MODELS:
        raise ConfigError(f"invalid model={name!r}: choose from {', '.join(MODELS)}")
    return MODELS[name]


def entry_by_wire_id(wire_id: int) -> ZooEntry:
    for e in MODELS.values():
        if e.wire_id == wire_id:
            return e
    from semcom.errors import WireFormatError

    raise WireFormatError(f"stream names unknown model id {wire_id}")


def check_quality(name: str, quality: int | None) -> int:
    """``quality`` (1-based; None: the model's default) checked against the model's levels."""
    e = entry(name)
    if quality is None:
        return e.default_quality
    if not 1 <= quality <= e.qualities:
        raise ConfigError(f"invalid quality={quality} for model {name}: choose from 1..{e.qualities}")
    return quality


def shipped_path(name: str) -> Path:
    return Path(str(resources.files("semcom.models") / "weights" / entry(name).weights))


def read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None


#: Largest hyper-parameter a weights file may declare (anything bigger is refused before allocating).
_HPARAM_LIMITS = {"n": 1024, "c": 1024, "cz": 1024, "qualities": 64, "height": 4096, "width": 4096}


def _hyperprior(path: Path) -> nn.Module:
    from semcom.models.hyperprior import SpatialHyperprior

    meta = read_metadata(path)
    try:
        hp = {k: int(meta[k]) for k in _HPARAM_LIMITS}
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"weights {path} lack the hyperprior's hyper-parameters ({exc})") from None
    for k, v in hp.items():
        if not 1 <= v <= _HPARAM_LIMITS[k]:
            raise WeightsError(f"weights {path} declare {k}={v}, outside 1..{_HPARAM_LIMITS[k]}")
    model = SpatialHyperprior(**hp)
    try:
        tensors = load_file(str(path))
        model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise WeightsError(f"weights {path} do not fit the hyperprior: {str(exc).splitlines()[0]}") from None
    model.metadata = meta
    from semcom.models.device import place

    return place(model.eval().requires_grad_(False))


def load_model(name: str, path: str | Path | None = None) -> nn.Module:
    """The model ``name`` with its shipped weights, or those at ``path``; float32, eval mode."""
    e = entry(name)
    path = Path(path) if path is not None else shipped_path(name)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if e.kind == "sphere":
        from semcom.models.weights import load_autoencoder

        return load_autoencoder(path)
    return _hyperprior(path)
