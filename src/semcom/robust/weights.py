"""Saving and loading the robust models with safetensors (no pickle), after :mod:`semcom.models.weights`.

A file holds the model's tensors and, as metadata, ``kind`` (``robust-masked-vqvae`` or ``robust-jscc``), the
training ``config`` as JSON (a :class:`~semcom.robust.config.RobustConfig`) and any provenance the caller adds
(the training command, data, steps, seed, time). Loading validates the config, builds the model it describes on
the meta device to check every tensor's shape before reading any, refuses non-finite values, and returns the model
in float32, eval mode, without gradients; anything wrong is a one-line :class:`~semcom.errors.WeightsError`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from semcom.errors import ConfigError, WeightsError
from semcom.models.weights import check_shapes, json_field, read_header, read_tensors
from semcom.robust.config import robust_config
from semcom.robust.model import MaskedVQVAE, ViTJSCC, build_model

__all__ = ["KINDS", "load_robust", "save_robust"]

#: The ``kind`` metadata of each model class.
KINDS = {"masked-vqvae": "robust-masked-vqvae", "jscc": "robust-jscc"}


def save_robust(model: MaskedVQVAE | ViTJSCC, path: str | Path, half: bool = False, **metadata) -> Path:
    """Save ``model`` to ``path`` (float32 by default: index decisions are sensitive to rounding the codebook;
    ``half=True`` stores float16); extra ``metadata`` (provenance) is stored beside ``kind`` and ``config``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous()
               for k, v in model.state_dict().items()}
    meta = {k: str(v) for k, v in metadata.items()}
    meta |= {"kind": KINDS[model.config.kind], "config": model.config.model_dump_json()}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_robust(path: str | Path) -> MaskedVQVAE | ViTJSCC:
    """The model saved at ``path`` by :func:`save_robust` (float32, eval mode, no gradients); its metadata is kept
    as ``model.metadata``."""
    path = Path(path)
    meta, shapes = read_header(path)
    if meta.get("kind") not in KINDS.values():
        raise WeightsError(f"weights {path} are not a robust model (kind={meta.get('kind')!r})")
    values = json_field(path, meta, "config")
    try:
        config = robust_config(**values)
    except (ConfigError, TypeError) as exc:
        raise WeightsError(f"weights {path} declare an invalid config: {exc}") from None
    if KINDS[config.kind] != meta["kind"]:
        raise WeightsError(f"weights {path}: kind {meta['kind']!r} does not match config kind {config.kind!r}")
    check_shapes(path, shapes, lambda: build_model(config), "model their config")
    tensors = read_tensors(path)
    model = build_model(config)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()})
    model.metadata = dict(meta)
    return model.eval().requires_grad_(False)
