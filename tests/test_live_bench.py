"""The live link's benchmark (semcom.live.bench): one run in process, over TCP, UDP and lossy UDP."""

from __future__ import annotations

from semcom.live.bench import format_live_bench, run_live_bench


def test_live_bench_reports_every_path_against_the_in_process_link():
    result = run_live_bench(frames=8, loss=0.2)
    rows = result["rows"]
    assert list(rows) == ["in_process", "tcp", "udp", "udp_loss"]
    assert rows["in_process"]["fps_ratio"] == 1.0
    for row in rows.values():
        assert row["fps"] > 0 and row["latency_ms"] > 0 and row["feedback_bits_per_frame"] > 0
    # the same frames and decisions each way: the schemes' packets cost the same bits
    assert rows["tcp"]["payload_bits_per_frame"] == rows["udp"]["payload_bits_per_frame"] == \
        rows["in_process"]["payload_bits_per_frame"]
    assert rows["udp_loss"]["shim"]["lost"] > 0 and rows["udp_loss"]["lost_frames"] == 0
    assert rows["udp_loss"]["bits_per_frame_wire"] >= rows["udp"]["bits_per_frame_wire"]
    assert format_live_bench(result).row_count == 4
