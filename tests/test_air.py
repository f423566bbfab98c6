"""The semantic link over a noisy digital channel: erasures are repaired or dropped, never decoded."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from semcom.config import LinkConfig
from semcom.link import Receiver, Transmitter
from semcom.link.air import OverTheAir
from semcom.phy import DigitalLink


def latents(t: int = 30, d: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = F.normalize(torch.randn(3, d, generator=g), dim=1)
    return F.normalize(base[torch.arange(t) % 3] + 0.2 * torch.randn(t, d, generator=g), dim=1)


def run(snr_db: float, max_attempts: int = 2):
    cfg = LinkConfig(rule="hopfield", d=16, m_max=8, tau=0.9, beta=30.0)
    tx, rx = Transmitter(cfg), Receiver(cfg)
    air = OverTheAir(tx, rx, DigitalLink("qpsk", "awgn", "ldpc-1/2", snr_db=snr_db, fit_codeword=True),
                     max_attempts=max_attempts)
    out = []
    for z in latents():
        got, rec = air.step(z)
        assert tx.memory == rx.memory and tx.t == rx.t          # in step after every frame, whatever happened
        if got is not None:
            assert torch.equal(got, tx.last_latent)               # never a garbled frame
        out.append(rec)
    return out


def test_clean_channel_delivers_every_frame_first_time():
    recs = run(snr_db=10.0)
    assert all(r.delivered and r.attempts == 1 for r in recs)
    assert all(r.channel_uses > 0 for r in recs)


def test_hopeless_channel_loses_frames_but_keeps_memories_in_sync():
    recs = run(snr_db=-6.0)
    assert not any(r.delivered for r in recs)
    assert all(r.attempts == 2 and r.feedback_bits == 2 for r in recs)


def test_marginal_channel_retransmits():
    recs = run(snr_db=0.5, max_attempts=4)
    assert any(r.attempts > 1 for r in recs)
    assert sum(r.delivered for r in recs) > 0


def test_run_over_a_channel_reports_channel_uses(tmp_path, capsys):
    import json

    from semcom.cli import main

    out = tmp_path / "run"
    assert main(["run", "-m", "sphere64", "--channel", "rayleigh", "--snr-db", "12", "--modulation", "qam64",
                 "--code", "ldpc-1/2", "--regimes", "static", "--frames", "12", "--rules", "nearest", "--no-video",
                 "--out", str(out), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["channel_uses_per_frame"] > 0 and row["attempts_per_frame"] >= 1
    assert row["lost_frames"] <= row["frames"] and row["bits_per_frame_wire"] > 0
    bad = tmp_path / "bad"
    assert main(["run", "-m", "sphere64", "--channel", "awgn", "--code", "turbo-9/10", "--out", str(bad)]) == 2
    assert not bad.exists()
