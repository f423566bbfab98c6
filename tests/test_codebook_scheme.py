"""The grounded codebook paper's system: training, weights, the stream (version 3), the raw bit pipe over the
air, the endpoints through the CLI and the reproductions' interfaces (issue 10)."""

from __future__ import annotations

import json
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_cli import _fails, semcom

from semcom.errors import ConfigError, WeightsError, WireFormatError
from semcom.models.vqvae import VARIANTS, load_vqvae, shipped_vqvae_path
from semcom.phy.link import BitPipe
from semcom.quantization.codebook import bsc_flip_probability
from semcom.schemes import stream_version
from semcom.schemes.codebook import (
    HEADER_SIZE,
    CodebookHeader,
    CodebookReceiver,
    CodebookTransmitter,
    IndexAirLink,
    bits_to_indices,
    indices_to_bits,
    load_variant,
    parse_header,
)
from semcom.sources import regime_clip


@pytest.fixture(scope="module")
def proposed():
    return load_variant("proposed")


@pytest.fixture(scope="module")
def frames():
    return regime_clip("cam_shake", frames=6)


# ---------------------------------------------------------------- labels


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([16, 32, 256, 4096]), st.lists(st.integers(0, 4095), min_size=0, max_size=50))
def test_labels_round_trip(J, values):
    idx = np.array([v % J for v in values], dtype=np.int64)
    bits = indices_to_bits(idx, J)
    assert bits.size == idx.size * int(math.log2(J)) and set(np.unique(bits)) <= {0, 1}
    assert np.array_equal(bits_to_indices(bits, J), idx)


def test_labels_are_natural_binary_msb_first():
    assert indices_to_bits(np.array([5]), 16).tolist() == [0, 1, 0, 1]
    assert bits_to_indices(np.array([1, 0, 0, 0, 0, 0, 0, 1]), 256).tolist() == [129]


def test_label_errors_name_the_value():
    with pytest.raises(ConfigError, match="0..15"):
        indices_to_bits(np.array([16]), 16)
    with pytest.raises(ConfigError, match="multiple of log2 J"):
        bits_to_indices(np.zeros(5), 16)


# ---------------------------------------------------------------- the shipped weights


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_ships_with_its_provenance(variant):
    model = load_variant(variant)
    meta = model.metadata
    assert model.hparams["variant"] == variant and model.J == 256
    assert set(json.loads(meta["config"])) >= {"steps", "variant", "J", "temperature"}
    assert "ascent" in meta["validation_photos"] and "astronaut" not in meta["train_photos"]
    val = json.loads(meta["validation"])
    # trained: well above what an untrained model reaches on held-out photos (about 11 dB)
    assert val["psnr_db"] > 16.0 and val["used_codewords"] > 64


def test_loader_refuses_what_is_not_a_codebook_model(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_vqvae(tmp_path / "none.safetensors")
    from semcom.models.weights import shipped_weights_path

    with pytest.raises(WeightsError, match="not a codebook VQ-VAE"):
        load_vqvae(shipped_weights_path())
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="cannot read"):
        load_vqvae(tmp_path / "junk.safetensors")
    with pytest.raises(WeightsError, match="not 'vqvae'"):
        load_variant("vqvae", shipped_vqvae_path("proposed"))


def test_loader_refuses_shapes_that_do_not_fit_the_metadata(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src = shipped_vqvae_path("vqvae")
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    hp = json.loads(meta["hparams"])
    hp["d"] = hp["d"] + 1
    save_file(load_file(str(src)), str(tmp_path / "bad.safetensors"), metadata=meta | {"hparams": json.dumps(hp)})
    with pytest.raises(WeightsError, match="do not fit"):
        load_vqvae(tmp_path / "bad.safetensors")


def test_training_a_few_steps_saves_weights_that_load_to_the_same_model(tmp_path):
    from semcom.sources.photos import load_photo
    from semcom.training.vqvae import VQVAETrainConfig, save_vqvae, train_vqvae

    cfg = VQVAETrainConfig(variant="vqvae+channel", J=16, steps=3, batch_size=4, pool=16)
    model, log = train_vqvae([load_photo("moon")], cfg, [load_photo("ascent")], checkpoint_every=2)
    assert len(log) == 3 and "validation" in log[1] and "validation" in log[2]
    assert {"mse", "ms_ssim", "quantization", "channel_aware", "total"} <= set(log[0])
    path = save_vqvae(model, tmp_path / "m.safetensors", cfg, ["moon"], ["ascent"], log)
    again = load_vqvae(path)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(again.indices(x), model.indices(x))  # the codebook is stored in float32


# ---------------------------------------------------------------- the stream


def test_stream_round_trip_is_what_the_receiver_shows(proposed, frames):
    tx, rx = CodebookTransmitter(proposed), CodebookReceiver(proposed)
    data = tx.encode(frames)
    assert stream_version(data) == 3
    header = parse_header(data)
    assert (header.frames, header.height, header.width, header.J) == (6, 64, 64, 256)
    assert len(data) == HEADER_SIZE + 6 * 64 * 8 // 8 + 4  # 64 indices of 8 bits per frame, and a CRC-32
    decoded = rx.decode(data)
    assert np.array_equal(decoded, rx.frames(tx.indices(frames)))


def test_stream_damage_is_refused_in_one_line(proposed, frames):
    rx = CodebookReceiver(proposed)
    data = CodebookTransmitter(proposed).encode(frames)
    with pytest.raises(WireFormatError, match="header implies"):
        rx.decode(data[:-1])
    with pytest.raises(WireFormatError, match="header implies"):
        rx.decode(data + b"\x00")
    bad = bytearray(data)
    bad[HEADER_SIZE + 3] ^= 0x10
    with pytest.raises(WireFormatError, match="payload fails its CRC"):
        rx.decode(bytes(bad))
    bad = bytearray(data)
    bad[6] ^= 1
    with pytest.raises(WireFormatError, match="header fails"):
        rx.decode(bytes(bad))
    with pytest.raises(WeightsError, match="this receiver holds vqvae"):
        CodebookReceiver(load_variant("vqvae")).decode(data)


@settings(max_examples=80, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_any_bytes_parse_or_fail_cleanly(blob):
    try:
        parse_header(b"SCM\x03" + blob)
    except WireFormatError:
        pass


@pytest.mark.parametrize("field,value,needle", [("frames", 0, "frames"), ("height", 12, "multiples of 8"),
                                                ("nbits", 13, "log2 J")])
def test_header_fields_out_of_range_are_named(field, value, needle):
    h = CodebookHeader("proposed", 256, b"abcd", 3, 64, 64)
    fields = {"frames": 3, "height": 64, "nbits": 8}
    fields[field] = value
    body = struct.pack(">3sBBB4sIHHH", b"SCM", 3, 3, fields["nbits"], b"abcd", fields["frames"], fields["height"],
                       64, 0)
    with pytest.raises(WireFormatError, match=needle):
        parse_header(body + struct.pack(">I", zlib.crc32(body)))
    assert parse_header(h.pack()) == h


# ---------------------------------------------------------------- over the air


def test_bit_pipe_flips_bits_as_the_closed_form_says():
    bits = np.random.default_rng(0).integers(0, 2, 60000)
    for snr in (0.0, 10.0):
        got = BitPipe(snr_db=snr, coherence_symbols=1).send(bits)
        p = bsc_flip_probability("qam64", snr, "rayleigh")
        assert abs((got != bits).mean() - p) < 5 * math.sqrt(p * (1 - p) / bits.size) + 2e-3


def test_bit_pipe_ldpc_is_clean_at_high_snr_and_never_erases():
    bits = np.random.default_rng(1).integers(0, 2, 5000)
    pipe = BitPipe(code="ldpc-1/2", snr_db=25.0, coherence_symbols=1)
    assert np.array_equal(pipe.send(bits), bits)
    noisy = BitPipe(code="ldpc-1/2", snr_db=0.0, coherence_symbols=1).send(bits)
    assert noisy.shape == bits.shape and (noisy != bits).any()  # wrong bits arrive, nothing is erased
    assert pipe.channel_uses(5000) == math.ceil(5000 / pipe.k) * 1536 // 6


def test_indices_over_the_air(proposed, frames):
    idx = CodebookTransmitter(proposed).indices(frames)
    clean, uses = IndexAirLink(256, seed=3).send(idx, 80.0)  # Rayleigh: BER ~ 1/SNR, so 80 dB for none
    assert torch.equal(clean, idx) and uses == math.ceil(idx.numel() * 8 / 1536) * 256
    noisy, _ = IndexAirLink(256, seed=3).send(idx, 5.0)
    pe = 1 - (1 - bsc_flip_probability("qam64", 5.0, "rayleigh")) ** 8
    assert abs((noisy != idx).double().mean().item() - pe) < 0.08
    assert CodebookReceiver(proposed).frames(noisy).shape == (6, 64, 64, 3)


def test_channel_aware_codebooks_degrade_less_under_bit_flips():
    """The paper's mechanism, on the shipped weights: at a high flip rate the channel-aware variants' decoded
    images lose less PSNR than the plain VQ-VAE's (images never trained on)."""
    from semcom.experiments.codebook_paper import test_images
    from semcom.metrics.image import psnr_per_frame

    images = test_images(16, seed=11)
    drop = {}
    for variant in ("vqvae", "vqvae+channel"):
        model = load_variant(variant)
        tx, rx = CodebookTransmitter(model), CodebookReceiver(model)
        idx = tx.indices(images)
        clean = np.mean(psnr_per_frame(images, rx.frames(idx)))
        noisy, _ = IndexAirLink(256, seed=0).send(idx, 10.0)
        drop[variant] = clean - np.mean(psnr_per_frame(images, rx.frames(noisy)))
    assert drop["vqvae+channel"] < drop["vqvae"]


# ---------------------------------------------------------------- through the CLI


def test_encode_and_decode_in_separate_processes(tmp_path):
    stream = tmp_path / "s.bin"
    rep = json.loads(semcom("encode", "cam_shake", "--scheme", "codebook", "--variant", "vqvae+channel", "-o",
                            stream, "--frames", "5", "--json").stdout)
    assert rep["bytes"] == stream.stat().st_size and rep["variant"] == "vqvae+channel"
    assert rep["bits_per_frame_indices"] == 512 and 0 < rep["used_codewords"] <= 256
    dec = json.loads(semcom("decode", stream, "-o", tmp_path / "out", "--json").stdout)
    assert dec["frames"] == 5 and dec["variant"] == "vqvae+channel"
    from semcom.metrics import psnr
    from semcom.sources import read_folder

    shown = np.stack(list(read_folder(tmp_path / "out")))
    assert psnr(regime_clip("cam_shake", frames=5), shown) == pytest.approx(rep["psnr_db"], abs=1e-6)


@pytest.mark.parametrize("args,needle", [
    (["--scheme", "codebook", "-q", "3"], "-q/--quality applies to --scheme memory"),
    (["--scheme", "codebook", "--variant", "best"], "invalid variant"),
    (["--variant", "proposed"], "--variant applies to --scheme codebook"),
    (["--scheme", "codebook", "--rule", "nearest"], "--rule applies to -m sphere64"),
])
def test_encode_flag_errors_are_one_line(tmp_path, args, needle):
    _fails(semcom("encode", "cam_shake", "-o", tmp_path / "s.bin", "--frames", "2", *args, check=False), needle)


@pytest.mark.parametrize("args,needle", [
    (["codebook-fig4", "--snr", "nan"], "not a finite SNR"),
    (["codebook-fig4", "--snr", "5", "inf"], "not a finite SNR"),
    (["codebook-fig4", "--snr"], "expected at least one argument"),
    (["hopfield-table1", "--snr", "5"], "--snr applies to codebook-fig4"),
    (["codebook-theory", "--mu", "1"], "--mu applies to codebook-j"),
])
def test_reproduce_option_errors_are_one_line(tmp_path, args, needle):
    _fails(semcom("reproduce", *args, "--quick", "--out", tmp_path / "r", check=False), needle)


def test_train_codebook_rejects_a_bad_J(tmp_path):
    _fails(semcom("train", "--algorithm", "codebook", "--J", "100", "-o", tmp_path / "w.safetensors",
                  check=False), "power of two")
    _fails(semcom("train", "--variant", "proposed", "-o", tmp_path / "w.safetensors", check=False),
           "--variant applies to --algorithm codebook")


def test_codebook_reproductions_json_interface(tmp_path):
    """``codebook-fig4`` and ``codebook-j`` as scripts read them (a reduced SNR list to stay fast)."""
    rep = json.loads(semcom("reproduce", "codebook-fig4", "--quick", "--snr", "0", "10", "--out",
                            tmp_path / "f4", "--json").stdout)
    rows = rep["rows"]
    assert {r["scheme"] for r in rows} == {"vqvae", "vqvae+entropy", "vqvae+channel", "proposed", "jpeg+ldpc",
                                           "bpg+ldpc"}
    for r in rows:
        assert set(r) >= {"scheme", "snr_db", "psnr_db", "ms_ssim", "lpips", "bits_per_image", "failed_fraction"}
        assert r["lpips"] is None and 0.0 <= r["failed_fraction"] <= 1.0
    assert {c["scheme"] for c in rep["codebooks"]} == set(VARIANTS)
    assert all({"index_entropy_bits", "used_codewords"} <= set(c) for c in rep["codebooks"])
    assert rep["headline"]["snr_db"] == 10.0
    assert (tmp_path / "f4" / "codebook_fig4.png").stat().st_size > 0
    for r in rows:  # more SNR never hurts a scheme by more than noise
        if r["snr_db"] == 0.0:
            hi = next(q for q in rows if q["scheme"] == r["scheme"] and q["snr_db"] == 10.0)
            assert hi["psnr_db"] >= r["psnr_db"] - 0.3


def test_codebook_j_marks_one_optimum_per_p(tmp_path):
    rep = json.loads(semcom("reproduce", "codebook-j", "--quick", "--out", tmp_path / "j", "--json").stdout)
    for p in {r["p"] for r in rep["rows"]}:
        sel = [r for r in rep["rows"] if r["p"] == p]
        assert sum(r["optimal"] for r in sel) == 1
        assert all(set(r) >= {"J", "p", "distortion_theory", "distortion_measured", "psnr_db"} for r in sel)
        if p == 0.0:  # no flips: D = D_q exactly, and it falls with J
            assert all(r["distortion_theory"] == pytest.approx(r["distortion_measured"]) for r in sel)


@pytest.fixture(scope="module")
def label_stream(proposed, frames):
    return CodebookTransmitter(proposed).encode(frames[:3])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 3)), min_size=1, max_size=4))
def test_resealed_mutations_give_frames_or_semcom_errors(proposed, label_stream, edits):
    """Edits that keep both CRCs valid (as a crafted file would) reach the receiver: frames of the declared
    shape, or the project's own error."""
    from semcom.errors import SemcomError
    from semcom.link.fuzzing import edit, reseal_framed

    x = reseal_framed(edit(label_stream, edits), HEADER_SIZE)
    try:
        header = parse_header(x)
        out = CodebookReceiver(proposed).decode(x)
    except SemcomError:
        return
    assert out.shape == (header.frames, header.height, header.width, 3) and out.dtype == np.uint8
