"""The autoencoder's training loop and the weights round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semcom.cli import main
from semcom.errors import WeightsError
from semcom.models import SphericalAutoencoder, fingerprint, load_autoencoder, save_autoencoder
from semcom.sources.photos import bundled_photos
from semcom.training.autoencoder import TrainConfig, random_crops, train_autoencoder


def test_training_lowers_the_loss_and_is_seeded():
    photos = list(bundled_photos(("astronaut", "coffee", "china")).values())
    cfg = TrainConfig(steps=80, batch_size=8, base=8, seed=3)
    model, losses = train_autoencoder(photos, cfg)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    again, losses2 = train_autoencoder(photos, cfg)
    assert losses2 == pytest.approx(losses, rel=1e-4)          # the same seed, the same run


def test_random_crops_are_in_range_and_sized():
    photos = [torch.rand(3, 100, 130)]
    x = random_crops(photos, 6, TrainConfig(height=32, width=48), torch.Generator().manual_seed(0))
    assert x.shape == (6, 3, 32, 48) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_weights_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = SphericalAutoencoder(d=16, height=32, width=32, base=8)
    path = save_autoencoder(model, tmp_path / "w.safetensors", half=False)
    back = load_autoencoder(path)
    assert back.hparams == model.hparams and fingerprint(back) == fingerprint(model)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_autoencoder(tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_autoencoder(tmp_path / "missing.safetensors")


def test_shipped_weights_are_small_and_load():
    from semcom.models import shipped_weights_path

    assert shipped_weights_path().stat().st_size < 4 * 2**20
    model = load_autoencoder()
    assert model.hparams == {"d": 64, "height": 64, "width": 64, "base": 32}


def test_train_command_writes_loadable_weights(tmp_path, capsys):
    out = tmp_path / "ae.safetensors"
    assert main(["train", "--steps", "3", "--batch-size", "4", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output"] == str(out) and report["config"]["steps"] == 3
    assert load_autoencoder(out).hparams["d"] == 64
