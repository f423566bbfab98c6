"""Threads chosen, not inherited (semcom.threads, ``--threads``), and what the command line imports at start-up.

No test here asserts a wall-clock time: start-up is checked by what ``sys.modules`` holds, in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from semcom import threads
from semcom.cli import build_parser, command_of, main
from semcom.errors import ConfigError

#: Packages that only some commands need: building the parser must not import them.
OPTIONAL = ("sionna", "av", "matplotlib", "constriction", "sklearn", "torchmetrics", "vector_quantize_pytorch",
            "scipy", "tensorflow")


def _modules_after(code: str) -> set[str]:
    """Top-level package names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent("""
        import json, sys
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
    """)
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


# ----------------------------------------------------------------------------- imports


def test_import_cli_and_full_parser_import_no_optional_package():
    loaded = _modules_after("""
        import semcom.cli
        semcom.cli.build_parser()
    """)
    assert "semcom" in loaded
    assert not loaded & set(OPTIONAL), loaded & set(OPTIONAL)


def test_help_imports_neither_torch_nor_numpy():
    loaded = _modules_after("""
        import contextlib, io
        import semcom.cli
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                semcom.cli.main(["--help"])
            except SystemExit as exc:
                assert exc.code == 0
    """)
    assert not loaded & {"torch", "numpy", "pydantic", *OPTIONAL}, loaded & {"torch", "numpy", "pydantic"}


def test_decode_to_a_folder_imports_no_optional_package(tmp_path):
    stream = tmp_path / "s.semcom"
    assert main(["encode", "cam_shake", "--frames", "3", "-m", "sphere64", "-o", str(stream), "--json"]) == 0
    loaded = _modules_after(f"""
        import contextlib, io
        import semcom.cli
        with contextlib.redirect_stdout(io.StringIO()):
            assert semcom.cli.main(["decode", {str(stream)!r}, "-o", {str(tmp_path / "frames")!r}]) == 0
    """)
    assert "torch" in loaded
    assert not loaded & set(OPTIONAL), loaded & set(OPTIONAL)


def test_lazy_packages_still_export_their_names():
    import semcom
    import semcom.metrics
    import semcom.phy

    assert semcom.LinkConfig.__name__ == "LinkConfig"
    assert callable(semcom.metrics.psnr) and callable(semcom.metrics.paper_bits)
    assert set(semcom.phy.__all__) <= set(dir(semcom.phy))
    with pytest.raises(AttributeError):
        semcom.metrics.no_such_metric  # noqa: B018


def test_help_lists_every_command_without_building_it():
    parser = build_parser(only="")
    text = parser.format_help()
    from semcom.commands import COMMANDS, HELP

    for name in COMMANDS:
        assert name in text and HELP[name].split()[0] in text
    assert command_of(["--help"]) == "" and command_of(["decode", "x"]) == "decode"
    assert command_of(["-h", "nonsense"]) == ""


# ----------------------------------------------------------------------------- the rule and --threads


def test_rule_one_thread_per_frame_and_torch_count_for_large_batches():
    assert threads.frame_threads() == threads.FRAME_THREADS == 1
    assert threads.batch_threads(8) == 1
    assert threads.batch_threads(threads.BATCH_MIN_FRAMES - 1) == 1
    assert threads.batch_threads(threads.BATCH_MIN_FRAMES) == threads.default_threads()
    assert threads.batch_threads(threads.BATCH_MIN_FRAMES // 4, 128, 128) == threads.default_threads()
    assert threads.frame_threads(3) == 3 and threads.batch_threads(1, override=3) == 3


def test_pinned_overrides_every_block_and_restores():
    before = torch.get_num_threads()
    with threads.pinned(3):
        assert torch.get_num_threads() == 3
        assert threads.frame_threads() == 3 and threads.batch_threads(10_000) == 3
        with threads.torch_threads(1):
            assert torch.get_num_threads() == 3   # the pin wins over an inner choice
        with threads.torch_threads(1, exact=True):
            assert torch.get_num_threads() == 1   # a benchmark comparing counts
        with threads.frame_work():
            assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before and threads.frame_threads() == 1
    with threads.pinned(None):
        assert torch.get_num_threads() == before
    with threads.frame_work():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("command", ["run", "encode", "decode", "bench", "reproduce", "send", "serve"])
def test_threads_option(command):
    parser = build_parser(only=command)
    required = {"run": [], "encode": ["x", "-o", "y"], "decode": ["x", "-o", "y"], "bench": [], "reproduce": [],
                "send": ["x", "--to", "h:1"], "serve": ["--listen", "h:1", "-o", "y"]}[command]
    assert parser.parse_args([command, *required]).threads is None
    assert parser.parse_args([command, *required, "--threads", "2"]).threads == 2
    with pytest.raises(ConfigError, match="--threads"):
        parser.parse_args([command, *required, "--threads", "0"])


# ----------------------------------------------------------------------------- same bytes whatever the count


@pytest.mark.parametrize("model", ["sphere64", "hyperprior"])
def test_stream_bytes_do_not_depend_on_threads(tmp_path: Path, model):
    streams = {}
    for n in (1, 2):
        out = tmp_path / f"{model}-{n}.semcom"
        assert main(["encode", "cam_shake", "--frames", "4", "-m", model, "-o", str(out), "--threads", str(n),
                     "--json"]) == 0
        streams[n] = out.read_bytes()
    assert streams[1] == streams[2]
    frames = {}
    for n in (1, 2):
        folder = tmp_path / f"{model}-frames-{n}"
        assert main(["decode", str(tmp_path / f"{model}-1.semcom"), "-o", str(folder), "--threads", str(n),
                     "--json"]) == 0
        frames[n] = [p.read_bytes() for p in sorted(folder.glob("*.png"))]
    assert frames[1] == frames[2] and len(frames[1]) == 4


def test_run_records_the_threads_it_used(tmp_path: Path, capsys):
    assert main(["run", "-m", "sphere64", "--regimes", "static", "--rules", "nearest", "--frames", "4",
                 "--no-video", "--out", str(tmp_path / "r"), "--json", "--threads", "1"]) == 0
    capsys.readouterr()
    meta = json.loads((tmp_path / "r" / "results.json").read_text())["meta"]
    assert meta["threads"] == 1


# ----------------------------------------------------------------------------- semcom bench: threads and start-up


def test_bench_threads_side_by_side_and_startup_structure():
    from rich.console import Console

    from semcom.experiments.bench import _thread_loops, format_bench, startup_times

    before = torch.get_num_threads()
    rows = _thread_loops([], None, 2, (1, 2), budget_s=0.1, min_repeats=1, max_repeats=1)
    assert torch.get_num_threads() == before
    assert [r["what"] for r in rows] == ["sphere64 link: frame -> bytes", "sphere64 link: bytes -> frame",
                                         "hopfield.decide(top_k=4), M=1000"]
    for r in rows:
        assert r["fps_1"] > 0 and r["fps_2"] > 0 and r["ratio"] == pytest.approx(r["fps_2"] / r["fps_1"])
    startup = startup_times(1)
    seconds = {r["what"]: r["seconds"] for r in startup["rows"]}
    assert {"python -c pass", "python -c 'import torch'", "semcom --help"} <= seconds.keys()
    for r in startup["rows"]:
        assert r["ratio_to_python"] == pytest.approx(r["seconds"] / seconds["python -c pass"])
        assert r["ratio_to_import_torch"] == pytest.approx(r["seconds"] / seconds["python -c 'import torch'"])
    result = {"device": "cpu", "threads": before, "weights": "shipped", "throughput": [], "batching": [],
              "models": [], "retrieval": [], "threads_per_frame": rows, "startup": startup}
    console = Console(record=True, width=200, file=open("/dev/null", "w"))
    for t in format_bench(result):
        console.print(t)
    text = console.export_text()
    assert "1 thread" in text and "2 threads" in text and "semcom --help" in text
    assert json.loads(json.dumps(result)) == result
