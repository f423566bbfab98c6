"""End to end through the ``semcom`` command: separate processes, real files, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from semcom.metrics import psnr
from semcom.sources import read_folder, regime_clip

FIELDS = ("scenario", "regime", "rule", "tau", "beta", "frames", "bits_per_frame_paper", "bits_per_frame_wire",
          "hit_rate", "compression_ratio", "semantic_efficiency", "reasoning_capacity", "psnr_db", "ssim")


def semcom(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "semcom.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("link")
    stream = tmp / "stream.bin"
    report = json.loads(semcom("encode", "illum_change", "-m", "sphere64", "-o", stream, "--frames", "40",
                               "--json").stdout)
    return tmp, stream, report


def test_encode_then_decode_in_separate_processes(encoded):
    tmp, stream, report = encoded
    assert stream.stat().st_size == report["bytes"]
    assert report["bits_per_frame_wire"] == pytest.approx(8 * report["bytes"] / report["frames"])
    assert report["frames"] == len(report["records"]) == 40
    assert report["hit_rate"] == pytest.approx(np.mean([r["hit"] for r in report["records"]]))
    out = tmp / "frames"
    dec = json.loads(semcom("decode", stream, "-o", out, "--json").stdout)
    assert dec["frames"] == 40 and dec["memory_size"] == report["memory_size"]
    decoded = np.stack(list(read_folder(out)))
    source = regime_clip("illum_change", frames=40)
    # the receiver, in its own process, decodes exactly what the transmitter reported
    assert psnr(source, decoded) == pytest.approx(report["psnr_db"], abs=1e-6)


def test_decode_to_a_video_file(encoded):
    tmp, stream, report = encoded
    semcom("decode", stream, "-o", tmp / "out.mp4")
    assert (tmp / "out.mp4").stat().st_size > 0


def _fails(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semcom: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle.lower() in lines[0].lower(), lines[0]


def test_bad_input_is_one_line_and_non_zero(encoded, tmp_path):
    tmp, stream, report = encoded
    data = stream.read_bytes()
    (tmp_path / "trunc.bin").write_bytes(data[: len(data) - 10])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flip.bin").write_bytes(bytes(flipped))
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a stream at all" * 3)
    (tmp_path / "clip.mp4").write_text("not a video")
    out = tmp_path / "o"
    _fails(semcom("decode", tmp_path / "missing.bin", "-o", out, check=False), "not found")
    _fails(semcom("decode", tmp_path / "trunc.bin", "-o", out, check=False), "truncated")
    _fails(semcom("decode", tmp_path / "flip.bin", "-o", out, check=False), "corrupted")
    _fails(semcom("decode", tmp_path / "junk.bin", "-o", out, check=False), "not a semcom stream")
    _fails(semcom("encode", tmp_path / "clip.mp4", "-m", "sphere64", "-o", out, check=False), "clip.mp4")
    _fails(semcom("encode", tmp_path / "nothing.mp4", "-m", "sphere64", "-o", out, check=False), "nothing.mp4")
    _fails(semcom("encode", "static", "-m", "sphere64", "-o", out, "--tau", "1.5", check=False), "tau")
    _fails(semcom("encode", "static", "-m", "sphere64", "-o", out, "--m-max", "0", check=False), "m_max")
    _fails(semcom("encode", "static", "-m", "sphere64", "-o", out, "--frames", "0", check=False), "frames")
    _fails(semcom("run", "-m", "sphere64", "--tau", "0", "--out", out, check=False), "tau")
    _fails(semcom("train", "--d", "0", "-o", out / "w.safetensors", check=False), "d")
    _fails(semcom("decode", stream, "-o", out, "--weights", tmp_path / "nope.safetensors", check=False), "weights")
    assert not out.exists()                                  # nothing was written on bad input


def test_run_writes_a_run_folder_whose_numbers_follow_their_definitions(tmp_path):
    out = tmp_path / "run"
    results = json.loads(semcom("run", "-m", "sphere64", "--regimes", "static", "cam_shake", "--frames", "36",
                                "--out", out, "--json").stdout)
    for name in ("config.json", "results.json", "report.html", "bits_per_frame.png", "memory_over_time.png",
                 "side_by_side.mp4", "side_by_side.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    assert len(results["rows"]) == 2 * 3
    for row in results["rows"] + results["summary"]:
        assert set(FIELDS) <= set(row)
        t = row["frames"]
        assert row["hit_rate"] == pytest.approx(row["hits"] / t)
        assert row["bits_per_frame_wire"] == pytest.approx(row["bits_wire"] / t)
        gamma = row["b_raw_bits_per_frame"] * t / row["bits_wire"]
        assert row["compression_ratio"] == pytest.approx(gamma)
        assert row["semantic_efficiency"] == pytest.approx(row["hit_rate"] * gamma)
        assert row["reasoning_capacity"] == pytest.approx(math.log2(1 + row["hit_rate"] * gamma))
    # the wire counts every bit the paper's eq. (3) leaves out
    assert all(r["bits_per_frame_wire"] > r["bits_per_frame_paper"] for r in results["rows"])
    # the paper's rule, taken literally, never stores a second prototype
    assert all(r["memory_size"] == 1 for r in results["rows"] if r["rule"] == "paper")


def test_a_session_under_faults_is_encoded_then_replayed_by_decode(tmp_path):
    """Bit errors, erasures and both memory corruptions through the CLI: the session file decodes, in its own
    process, to exactly what the live receiver decoded; no frame came from a memory known to be bad."""
    stream = tmp_path / "session.bin"
    rep = json.loads(semcom("encode", "illum_change", "-m", "sphere64", "-o", stream, "--frames", "48", "--ber", "1e-3",
                            "--erasure-rate", "0.05", "--corrupt-ids", "0.5", "--corrupt-sigma", "0.05",
                            "--corrupt-at", "20", "--cue-bits", "32", "--sync-every", "8", "--json").stdout)
    assert stream.stat().st_size == rep["bytes"]
    assert rep["damaged_packets"] > 0 and rep["resyncs"] >= 1 and rep["decoded_known_bad"] == 0
    assert rep["faults"] >= 1 and rep["unresolved_faults"] == 0
    out = tmp_path / "frames"
    dec = json.loads(semcom("decode", stream, "-o", out, "--json").stdout)
    assert dec["session"] and dec["frames"] == 48 and dec["frames_lost"] == rep["frames_lost"]
    decoded = np.stack(list(read_folder(out)))
    assert psnr(regime_clip("illum_change", frames=48), decoded) == pytest.approx(rep["psnr_db"], abs=1e-6)
    # a flipped bit or a truncation of the file is detected: one line, nothing written
    data = bytearray(stream.read_bytes())
    for damaged in (data[:-3], data[:200] + bytes([data[200] ^ 0x10]) + data[201:]):
        bad = tmp_path / "bad.bin"
        bad.write_bytes(bytes(damaged))
        _fails(semcom("decode", bad, "-o", tmp_path / "bad_out", check=False), "corrupted")
        assert not (tmp_path / "bad_out").exists()


def test_fault_flags_are_validated(tmp_path):
    for flags, needle in ((["--ber", "0.7"], "ber"), (["--corrupt-ids", "2"], "corrupt_ids"),
                          (["--cue-bits", "65"], "cue_bits"), (["--coding", "adaptive", "--ber", "1e-3"], "fixed")):
        _fails(semcom("encode", "static", "-m", "sphere64", "-o", tmp_path / "x.bin", *flags, check=False), needle)
    _fails(semcom("run", "-m", "sphere64", "--ber", "1e-3", "--channel", "awgn", "--out", tmp_path / "r",
                  check=False), "channel")


def test_an_internal_error_is_one_line_unless_asked(monkeypatch, capsys):
    from semcom import cli
    from semcom.commands import bench

    def boom(args):
        raise RuntimeError("something broke")

    monkeypatch.setattr(bench, "main", boom)
    assert cli.main(["bench", "--quick"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something broke" in err
    monkeypatch.setenv("SEMCOM_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="something broke"):
        cli.main(["bench", "--quick"])
