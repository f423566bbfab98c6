"""Structure of ``run_bench`` / ``format_bench`` (never wall-clock values)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from rich.console import Console
from rich.table import Table

from semcom.experiments.bench import filled_memory, format_bench, run_bench, scene_stream, time_interleaved
from semcom.models.weights import shipped_weights_path

SINGLE_FLOORS = {"floor: P @ z (torch)", "floor: z @ PT (torch)"}
BATCH_FLOORS = {"floor: Q @ P.T (torch)", "floor: Q @ PT (torch)"}
RETRIEVAL_OPS = {*SINGLE_FLOORS, *BATCH_FLOORS, "exact: memory.nearest", "nearest.decide", "hopfield.decide(top_k=4)",
                 "hopfield.decide(top_k=4), after a miss", "paper.decide", "hopfield.readout",
                 "hopfield.readout, after a miss", "approx: index search (1 query)", "approx: nearest.decide",
                 "exact: memory.nearest_batch(B=64)", "nearest.decide_batch(B=64)", "hopfield_retrieve(B=64)"}


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def result() -> dict:
    return run_bench(sizes=(1000,), frames=16, quick=True)


def test_top_level(result):
    assert {"device", "threads", "weights", "throughput", "retrieval"} <= result.keys()
    assert result["device"] == "cpu"
    assert result["threads"] == torch.get_num_threads()
    assert result["weights"] == ("shipped" if shipped_weights_path().is_file() else "random-init")
    assert json.loads(json.dumps(result)) == result  # JSON-serialisable, losslessly


def test_throughput_rows(result):
    rows = result["throughput"]
    assert {(r["what"], r["batch"]) for r in rows} == {
        ("encode", 64), ("encode", 1), ("decode", 64), ("decode", 1), ("link:nearest", 1), ("link:hopfield", 1)}
    for r in rows:
        assert {"what", "batch", "fps"} <= r.keys()
        assert _positive_finite(r["fps"]) and _positive_finite(r["seconds_per_frame"])
        assert r["fps"] * r["seconds_per_frame"] == pytest.approx(1.0)
        assert isinstance(r["samples"], int) and r["samples"] >= 1
        if r["what"].startswith("link:"):
            assert 0.0 <= r["hit_rate"] <= 1.0
    fps = {(r["what"], r["batch"]): r["fps"] for r in rows}
    for b in result["batching"]:
        assert b["ratio"] == pytest.approx(fps[(b["what"], 64)] / fps[(b["what"], 1)])


def test_retrieval_rows(result):
    rows = result["retrieval"]
    assert {r["op"] for r in rows} == RETRIEVAL_OPS and len(rows) == len(RETRIEVAL_OPS)
    for r in rows:
        assert r["M"] == 1000 and r["d"] == 64
        for key in ("seconds", "floor_seconds", "ratio_to_floor"):
            assert _positive_finite(r[key]), (r["op"], key)
        assert r["ratio_to_floor"] == pytest.approx(r["seconds"] / r["floor_seconds"], rel=1e-12)
        assert isinstance(r["samples"], int) and r["samples"] >= 1
    for group, floors in (("one query", SINGLE_FLOORS), ("batch of 64", BATCH_FLOORS)):
        grouped = [r for r in rows if r["group"] == group]
        best = min(r["seconds"] for r in grouped if r["op"] in floors)
        # the ops of a group share its best floor, measured alongside them
        assert {r["floor_seconds"] for r in grouped} == {best}
        assert {"floor: " + r["floor"] for r in grouped} <= floors


def test_index_rows(result):
    (r,) = result["index"]
    assert r["M"] == 1000 and r["library"].startswith("faiss")
    assert r["queries"] == 200 and _positive_finite(r["build_seconds"]) and _positive_finite(r["seconds_per_query"])
    for key in ("decision_agreement", "hit_miss_agreement", "recall_at_1", "recall_at_1_on_hits", "exact_hit_rate"):
        assert 0.0 <= r[key] <= 1.0, key
    assert r["decision_agreement"] <= r["hit_miss_agreement"]
    single = {x["op"]: x for x in result["retrieval"] if x["group"] == "one query"}
    assert r["ratio_to_floor"] == pytest.approx(r["seconds_per_query"] / single["nearest.decide"]["floor_seconds"])


def test_retrieval_only_and_exact_index():
    res = run_bench(sizes=(300,), repeats=1, quick=True, index="exact", retrieval_only=True)
    assert res["throughput"] == [] and res["models"] == [] and res["startup"] is None and res["index"] == []
    assert not any(r["op"].startswith("approx") for r in res["retrieval"])
    assert format_bench(res)


def test_model_rows(result):
    rows = {(r["model"], r["what"]): r for r in result["models"]}
    assert set(rows) == {(m, w) for m in ("sphere64", "hyperprior") for w in ("encode", "decode")}
    for (m, w), r in rows.items():
        assert _positive_finite(r["fps"])
        assert r["ratio_to_sphere64"] == pytest.approx(r["fps"] / rows[("sphere64", w)]["fps"])
    assert rows[("sphere64", "encode")]["ratio_to_sphere64"] == 1.0


def test_format_bench(result):
    tables = format_bench(result)
    assert tables and all(isinstance(t, Table) for t in tables)
    console = Console(record=True, width=200, file=open("/dev/null", "w"))
    for t in tables:
        console.print(t)
    text = console.export_text()
    for name in ("link:nearest", "link:hopfield", *RETRIEVAL_OPS):
        assert name in text, name


def test_quick_caps_frames():
    assert run_bench(sizes=(10,), frames=1000, repeats=1, quick=True)["frames"] == 64


def test_bad_arguments():
    with pytest.raises(ValueError):
        run_bench(sizes=(0,), quick=True)
    with pytest.raises(ValueError):
        run_bench(sizes=(10,), repeats=0, quick=True)
    with pytest.raises(ValueError):
        run_bench(sizes=(10,), quick=True, index="fast")


def test_time_interleaved_sample_counts():
    calls = {"a": 0, "b": 0}

    def bump(k):
        calls[k] += 1

    samples = time_interleaved({"a": lambda: bump("a"), "b": lambda: bump("b")}, repeats=3, min_block_s=0.0)
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3}
    assert calls == {"a": 4, "b": 4}  # one warm-up, then one call per block
    assert all(_positive_finite(x) for v in samples.values() for x in v)


def test_filled_memory_is_a_valid_full_memory():
    mem = filled_memory(100, 8, seed=3)
    assert len(mem) == 100 == mem.m_max and mem.prototypes.shape == (100, 8)
    assert torch.allclose(mem.prototypes.norm(dim=1), torch.ones(100))
    assert mem.slot_for_write() == 0  # full, LRU, all stamps equal: lowest slot
    assert mem == filled_memory(100, 8, seed=3)


def test_scene_stream_is_unit_norm():
    z = scene_stream(50, 16)
    assert z.shape == (50, 16)
    assert torch.allclose(z.norm(dim=1), torch.ones(50))
