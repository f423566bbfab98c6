"""Sweeps on Dask (semcom.sweeps): cells in order, seeded per cell, and the same numbers serial or on workers."""

from __future__ import annotations

import json

import pytest

from semcom.cli import main
from semcom.sweeps import SERIAL, DaskSweep, cell_label, cell_seed, map_cells


def _echo(context, cell, seed):
    return {"cell": cell, "seed": seed, "context": context}


def _slow_first(context, cell, seed):
    import time

    time.sleep(0.3 if cell == 0 else 0.0)  # finish out of order on two workers
    return cell * context


def _draw(context, cell, seed):
    import numpy as np

    return float(np.random.default_rng(seed).normal())


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 worker processes for the whole module (starting one costs seconds)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc) as client:
        yield lc, DaskSweep(client, "test cluster")


def _rows(stdout: str) -> dict:
    res = json.loads(stdout)
    res.pop("meta", None)
    return res


def test_cell_seed_is_a_fixed_function_of_run_seed_and_cell():
    assert cell_seed(0, ("STABLE", "hopfield", 0.95)) == cell_seed(0, ("STABLE", "hopfield", 0.95))
    seeds = {cell_seed(s, c) for s in (0, 1) for c in (("a", 1), ("a", 2), ("b", 1), "a", 1)}
    assert len(seeds) == 10 and all(0 <= s < 2**63 for s in seeds)
    assert cell_seed(-1, "a") == cell_seed(2**64 - 1, "a")  # a negative run seed wraps, never fails
    # pinned values: the same on every machine, in every process (no salted hash()) and in every release
    assert cell_seed(0, ("x", 1)) == 6767054658649105904 and cell_seed(7, "STABLE") == 8757348873097879525
    assert cell_label(("x", 1, 0.5)) == "x/1/0.5" and cell_label("c") == "c"


def test_serial_map_keeps_cell_order_and_seeds_each_cell():
    seen = []
    got = map_cells(_echo, [("b", 2), ("a", 1), "c"], context=7, seed=3, progress=seen.append)
    assert [g["cell"] for g in got] == [("b", 2), ("a", 1), "c"]
    assert [g["seed"] for g in got] == [cell_seed(3, c) for c in (("b", 2), ("a", 1), "c")]
    assert all(g["context"] == 7 for g in got) and seen == ["b/2", "a/1", "c"]
    assert map_cells(_echo, [], 0) == [] and SERIAL.workers == 1


def test_dask_map_returns_cell_order_with_the_serial_numbers(cluster):
    _, dask = cluster
    seen = []
    cells = list(range(6))
    assert map_cells(_slow_first, cells, 10, progress=seen.append, strategy=dask) == [c * 10 for c in cells]
    assert sorted(seen) == [str(c) for c in cells] and dask.workers == 2  # one step per finished cell
    draws = [("d", i) for i in range(8)]
    assert map_cells(_draw, draws, None, 5, strategy=dask) == map_cells(_draw, draws, None, 5)


def test_dask_map_raises_a_cells_error(cluster):
    _, dask = cluster
    with pytest.raises(ZeroDivisionError):
        map_cells(lambda ctx, cell, seed: 1 / cell, [1, 0, 2], strategy=dask)


def test_ber_on_workers_counts_what_the_serial_run_counts(cluster, capsys):
    """Several blocks per point, and a target that stops a point part-way through a wave."""
    lc, _ = cluster
    argv = ["ber", "--modulation", "qpsk", "--ebn0-db", "0,6", "--bits", "400000", "--target-errors", "15000",
            "--json"]
    assert main(argv) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main(argv + ["--scheduler", lc.scheduler_address]) == 0
    assert json.loads(capsys.readouterr().out) == serial
    low, high = serial["points"]
    assert 15000 <= low["errors"] < low["bits"] * 0.2 and low["bits"] < 400000  # stopped by the target
    assert high["errors"] < 15000 and high["bits"] > low["bits"]                # ran to --bits


def test_reproduce_on_two_workers_matches_serial(tmp_path, capsys):
    argv = ["reproduce", "hopfield-fig1", "--quick", "--json"]
    assert main(argv + ["--out", str(tmp_path / "serial")]) == 0
    serial = _rows(capsys.readouterr().out)
    assert main(argv + ["--out", str(tmp_path / "dask"), "--workers", "2"]) == 0
    assert _rows(capsys.readouterr().out) == serial
    meta = json.loads((tmp_path / "dask" / "results.json").read_text())["meta"]
    assert meta["sweep"].startswith("local Dask cluster, 2 workers")


@pytest.mark.parametrize("argv, needle", [
    (["reproduce", "hopfield-fig1", "--workers", "0"], "invalid --workers=0"),
    (["reproduce", "hopfield-fig1", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
    (["ber", "--workers", "-3"], "invalid --workers=-3"),
    (["ber", "--workers", "two"], "invalid int value"),
])
def test_bad_sweep_options_are_one_line_errors(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_unreachable_scheduler_is_a_one_line_error_naming_the_option(monkeypatch, capsys):
    import semcom.sweeps

    monkeypatch.setattr(semcom.sweeps, "SCHEDULER_TIMEOUT_S", 1.0)
    assert main(["ber", "--ebn0-db", "4", "--bits", "1000", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("semcom: error: --scheduler tcp://127.0.0.1:1"), err
