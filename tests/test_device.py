"""``--device`` (issue 14, item 5): the option on six commands, its refusal without CUDA, byte-identical CPU output,
and the split of :mod:`semcom.models.device`: the transforms that decide no bit may run elsewhere, everything that
decides bits and memory contents stays on the CPU, so float differences of the transforms cannot desynchronise the
two memories. The CUDA round trips run only where CUDA is present."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from semcom.cli import build_parser, main
from semcom.config import LinkConfig
from semcom.link import Receiver, Transmitter
from semcom.link.coding import range_decoded
from semcom.link.wire import HEADER_SIZE, pack_stream
from semcom.models import fingerprint, load_autoencoder
from semcom.models.device import current_device, default_device, device_parts, place
from semcom.models.zoo import load_model
from semcom.schemes.codebook import load_variant
from semcom.schemes.codec_link import HEADER_SIZE as CODEC_HEADER_SIZE
from semcom.schemes.codec_link import CodecHeader, CodecLinkConfig, CodecReceiver, CodecTransmitter, encode_clip
from semcom.schemes.token_link import TokenHeader, TokenLinkConfig, TokenReceiver
from semcom.schemes.token_link import encode_clip as token_encode_clip
from semcom.sources import regime_clip
from semcom.threads import torch_threads

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def clip():
    return regime_clip("scene_change", frames=10)


@pytest.fixture(scope="module")
def hyperprior():
    return load_model("hyperprior")


@pytest.fixture(scope="module")
def sphere():
    return load_autoencoder()


@pytest.fixture(scope="module")
def vqvae():
    return load_variant("proposed")


# ------------------------------------------------------------------ the option


@pytest.mark.parametrize("argv", [["run"], ["encode", "cam_shake", "-o", "x.bin"], ["decode", "x.bin", "-o", "out"],
                                  ["train"], ["bench"], ["reproduce", "hopfield-table1"]])
def test_every_command_takes_device(argv):
    parser = build_parser(only=argv[0])
    assert parser.parse_args(argv).device == "cpu"
    for name in ("cpu", "cuda", "cuda:1"):
        assert parser.parse_args([*argv, "--device", name]).device == name


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CUDA"])
def test_a_malformed_device_is_a_one_line_error(bad, capsys):
    assert main(["encode", "cam_shake", "-o", "x.bin", "--device", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
@pytest.mark.parametrize("argv", [["encode", "cam_shake", "-o", "{tmp}/x.bin"], ["decode", "{tmp}/x.bin", "-o",
                                  "{tmp}/out"], ["train", "--steps", "1", "-o", "{tmp}/w.safetensors"], ["run"],
                                  ["bench", "--quick"], ["reproduce", "hopfield-table1", "--quick"]])
def test_cuda_without_cuda_is_a_one_line_error_naming_device(argv, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("semcom: error: --device cuda: CUDA is not available")
    assert list(tmp_path.iterdir()) == []          # refused before any work


@pytest.mark.parametrize("model", ["hyperprior", "sphere64"])
def test_device_cpu_is_byte_identical_to_the_default(model, tmp_path, capsys):
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        assert main(["encode", "scene_change", "--frames", "6", "-m", model, "-o", str(tmp_path / f"{name}.bin"),
                     "--json", *extra]) == 0
        assert main(["decode", str(tmp_path / f"{name}.bin"), "-o", str(tmp_path / name), "--json", *extra]) == 0
    capsys.readouterr()
    assert (tmp_path / "default.bin").read_bytes() == (tmp_path / "cpu.bin").read_bytes()
    for png in sorted((tmp_path / "default").iterdir()):
        assert png.read_bytes() == (tmp_path / "cpu" / png.name).read_bytes()


def test_default_device_is_scoped():
    assert current_device() == torch.device("cpu")
    with default_device("meta"):
        assert current_device() == torch.device("meta")
        model = load_autoencoder()
    assert current_device() == torch.device("cpu")
    assert {p.device.type for p in model.parameters()} == {"meta"}


# ------------------------------------------------------------------ what stays on the CPU


def _devices(module: torch.nn.Module) -> set[str]:
    return {t.device.type for t in [*module.parameters(), *module.buffers()]}


def test_only_the_transforms_move(hyperprior, sphere, vqvae):
    hp = place(copy.deepcopy(hyperprior), "meta")
    assert set(device_parts(hp)) == {"g_a", "g_s"}
    assert _devices(hp.g_a) == _devices(hp.g_s) == {"meta"}
    for name in ("h_a", "h_s_z", "h_s_ref", "h_s_out", "gaussian", "z_prior"):
        assert _devices(getattr(hp, name)) == {"cpu"}, name
    assert hp.log_gain.device.type == hp.log_inv_gain.device.type == "cpu"
    vq = place(copy.deepcopy(vqvae), "meta")
    assert _devices(vq.vq) == {"cpu"} and _devices(vq.g_a) == {"meta"}
    ae = place(copy.deepcopy(sphere), "meta")
    assert _devices(ae) == {"meta"}            # the sphere link decides on latents, on the CPU, with no network
    assert ae.encoder._forward_hooks and ae.encoder._forward_pre_hooks   # CPU tensors in, CPU tensors out
    on_cpu = place(copy.deepcopy(sphere), "cpu")
    assert not on_cpu.encoder._forward_hooks and not on_cpu.encoder._forward_pre_hooks


def test_the_receivers_bit_path_never_touches_the_transforms(hyperprior, sphere, vqvae, clip):
    """With the transforms on the meta device (no values at all), each receiver still decodes the symbols and
    keeps its memory identical to the transmitter's: nothing on that path uses them."""
    cfg = CodecLinkConfig(quality=5, tau=0.9, m_max=4)
    data, tx = encode_clip(clip, cfg, hyperprior)
    rx = CodecReceiver(CodecHeader.from_bytes(data).config, place(copy.deepcopy(hyperprior), "meta"))
    list(range_decoded(data, CODEC_HEADER_SIZE, len(clip), rx._receive))
    assert rx.memory.digest() == tx.memory.digest()

    tcfg = TokenLinkConfig(variant="proposed", m_max=4)
    data, ttx = token_encode_clip(clip, tcfg, vqvae)
    trx = TokenReceiver(TokenHeader.from_bytes(data).config, place(copy.deepcopy(vqvae), "meta"))
    assert [g.tolist() for g in trx.grids(data, len(clip))] == [g.tolist() for g in ttx.shown]
    assert trx.memory.digest() == ttx.memory.digest()

    data, stx = _sphere_stream(sphere, clip)
    srx, header = Receiver.from_header(data[:HEADER_SIZE], place(copy.deepcopy(sphere), "meta").decoder)
    list(srx.iter_stream(data, header.frames, HEADER_SIZE))
    assert srx.memory.digest() == stx.memory.digest()


def _sphere_stream(model, clip) -> tuple[bytes, Transmitter]:
    link = LinkConfig(rule="hopfield", tau=0.9, m_max=6, d=64, height=64, width=64)
    tx = Transmitter(link, model.encoder, fingerprint(model))
    writer = tx.stream_writer()
    for frame in clip:
        tx.send_to_stream(tx.encode(frame)[0], writer)
    return pack_stream(tx.header(len(clip)), writer.getvalue()), tx


def _perturbed(model, names, scale: float):
    """A copy of ``model`` whose transforms ``names`` add a relative error of about ``scale`` to their outputs,
    as another device's float arithmetic would (much larger than a GPU's, so that choices change)."""
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    for name in names:
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out: out * (1 + scale * torch.randn(out.shape, generator=gen)))
    return model


def test_transform_float_differences_cannot_desynchronise_the_memories(hyperprior, sphere, clip):
    """A transmitter whose g_a/g_s (or encoder) compute differently from the receiver's: the stream changes (the
    transmitter chose differently), but the receiver's memory equals the transmitter's after every frame."""
    cfg = CodecLinkConfig(quality=5, tau=0.9, m_max=4)
    clean, _ = encode_clip(clip, cfg, hyperprior)
    tx = CodecTransmitter(cfg, _perturbed(hyperprior, ("g_a", "g_s"), 1e-3))
    digests = []
    for frame in clip:
        tx.send(frame)
        digests.append(tx.memory.digest())
    data = tx.finish()
    assert data != clean
    rx, header = CodecReceiver.open(data, hyperprior)
    for t, frame in enumerate(rx.frames(data, header.frames)):
        assert rx.memory.digest() == digests[t]
        assert np.abs(frame.astype(int) - tx.decoded[t].astype(int)).max() <= 8  # the pixels, not the memory

    clean, _ = _sphere_stream(sphere, clip)
    data, stx = _sphere_stream(_perturbed(sphere, ("encoder",), 1e-2), clip)
    assert data != clean
    srx, header = Receiver.from_header(data[:HEADER_SIZE], sphere.decoder, fingerprint(sphere))
    list(srx.iter_stream(data, header.frames, HEADER_SIZE))
    assert srx.memory.digest() == stx.memory.digest()


# ------------------------------------------------------------------ on a GPU


@cuda
@pytest.mark.parametrize("tx_dev,rx_dev", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_stream_encoded_on_one_device_decodes_on_the_other(hyperprior, sphere, vqvae, clip, tx_dev, rx_dev):
    on = {d: (place(copy.deepcopy(hyperprior), d), place(copy.deepcopy(sphere), d), place(copy.deepcopy(vqvae), d))
          for d in (tx_dev, rx_dev)}
    cfg = CodecLinkConfig(quality=5, tau=0.9, m_max=4)
    data, tx = encode_clip(clip, cfg, on[tx_dev][0])
    rx, header = CodecReceiver.open(data, on[rx_dev][0])
    for t, frame in enumerate(rx.frames(data, header.frames)):
        assert np.abs(frame.astype(int) - tx.decoded[t].astype(int)).max() <= 8   # TF32 / summation order
    assert rx.memory.digest() == tx.memory.digest()

    data, stx = _sphere_stream(on[tx_dev][1], clip)
    srx, header = Receiver.from_header(data[:HEADER_SIZE], on[rx_dev][1].decoder, fingerprint(on[rx_dev][1]))
    latents = torch.stack(list(srx.iter_stream(data, header.frames, HEADER_SIZE)))
    assert srx.memory.digest() == stx.memory.digest()
    assert srx.decode(latents).shape == (len(clip), 64, 64, 3)

    tcfg = TokenLinkConfig(variant="proposed", m_max=4)
    data, ttx = token_encode_clip(clip, tcfg, on[tx_dev][2])
    trx, header = TokenReceiver.open(data, on[rx_dev][2])
    assert [g.tolist() for g in trx.grids(data, header.frames)] == [g.tolist() for g in ttx.shown]
    assert trx.memory.digest() == ttx.memory.digest()


@cuda
def test_cli_encode_on_cuda_decode_on_cpu(tmp_path, capsys):
    assert main(["encode", "scene_change", "--frames", "8", "-o", str(tmp_path / "s.bin"), "--device", "cuda"]) == 0
    for dev in ("cpu", "cuda"):
        assert main(["decode", str(tmp_path / "s.bin"), "-o", str(tmp_path / dev), "--json", "--device", dev]) == 0
    out, docs, decoder = capsys.readouterr().out.strip(), [], json.JSONDecoder()
    while out:
        doc, end = decoder.raw_decode(out)
        docs.append(doc)
        out = out[end:].strip()
    assert [d["memory_digest"] for d in docs][0] == [d["memory_digest"] for d in docs][1]


@cuda
@pytest.mark.parametrize("algorithm", ["autoencoder", "codebook"])
def test_train_on_cuda(algorithm, tmp_path, capsys):
    argv = ["train", "--algorithm", algorithm, "--steps", "2", "--batch-size", "4", "-o", str(tmp_path / "w.st"),
            "--device", "cuda", "--json"]
    assert main(argv) == 0
    assert (tmp_path / "w.st").is_file()
