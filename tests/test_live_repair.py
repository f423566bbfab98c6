"""The sphere64 link's feedback over a real socket: a receiver memory corrupted mid-stream is caught (by a cue,
or by the memory check) and repaired (lookup and swap, or audit and slot repairs) before anything is decoded
from it, so every frame the server writes is still the one the transmitter recorded."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch
from PIL import Image

from semcom.config import LinkConfig, ProtectionConfig
from semcom.live.client import SendConfig, send_frames
from semcom.live.local import LocalServer
from semcom.live.schemes import SphereSender
from semcom.live.server import ServeConfig
from semcom.sources import open_source


@pytest.fixture(scope="module")
def model():
    from semcom.models import load_autoencoder

    return load_autoencoder()


def swap_slots(memory) -> None:
    """The receiver's ID map sends slots 0 and 1 to each other (Section IV-D's permuted IDs)."""
    memory.swap(0, 1)


def add_noise(memory) -> None:
    """Every stored prototype moved by N(0, 0.05^2 I) and renormalised."""
    g = torch.Generator().manual_seed(0)
    noisy = memory.prototypes + 0.05 * torch.randn(memory.prototypes.shape, generator=g)
    memory.corrupt(noisy / noisy.norm(dim=1, keepdim=True))


@pytest.mark.parametrize(("fault", "protection", "counter"), [
    (swap_slots, dict(cue_bits=32, sync_every=0), "lookups"),
    (add_noise, dict(cue_bits=0, sync_every=1), "repaired_slots"),
], ids=["cue-lookup", "audit-repair"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_corrupted_receiver_memory_is_repaired_over_the_socket(tmp_path, model, fault, protection, counter,
                                                               transport):
    hp = model.hparams
    sender = SphereSender(model, LinkConfig(d=hp["d"], height=hp["height"], width=hp["width"]),
                          ProtectionConfig(**protection))
    frames = open_source("repetitive_return", frames=24).frames
    with LocalServer(ServeConfig(out=tmp_path, transport=transport)) as srv:
        done = []

        def corrupt_once(shown) -> None:
            table = srv.server.table
            if not done and sender.memory.size >= 2:
                srv.call(lambda: fault(next(iter(table.sessions.values())).endpoint.memory))
                done.append(sender.t)

        result = asyncio.run(send_frames(SendConfig(port=srv.port, transport=transport), sender, frames,
                                         on_frame=corrupt_once))
    assert done, "the memory never held two prototypes"
    session = tmp_path / result.summary["session"]
    on_server = json.loads((session / "session.json").read_text())
    assert on_server[counter] >= 1 and on_server["lost_frames"] == 0
    pngs = sorted(session.glob("frame_*.png"))
    assert len(pngs) == len(frames)
    for shown, png in zip(result.shown, pngs, strict=True):
        assert np.array_equal(shown.frame, np.asarray(Image.open(png))), png.name
