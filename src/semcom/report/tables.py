"""Human tables (rich) of a run's rows; the same column specs serve the HTML report."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

Column = tuple[str, str, str]  # (key, label, format)

COLUMNS: list[Column] = [
    ("scenario", "scenario", "{}"), ("regime", "regime", "{}"), ("rule", "rule", "{}"), ("frames", "T", "{}"),
    ("bits_per_frame_paper", "bits/frame eq.3", "{:.2f}"), ("bits_per_frame_wire", "bits/frame wire", "{:.2f}"),
    ("hit_rate", "hit rate", "{:.3f}"), ("compression_ratio", "gamma", "{:.0f}"),
    ("reasoning_capacity", "C_R", "{:.2f}"), ("psnr_db", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"),
    ("memory_size", "M", "{}")]

#: What a run under faults adds (semcom.link.session.fault_summary), per regime and rule.
FAULT_COLUMNS: list[Column] = [
    ("regime", "regime", "{}"), ("rule", "rule", "{}"), ("forward_bits_per_frame", "forward/frame", "{:.1f}"),
    ("feedback_bits_per_frame", "feedback/frame", "{:.1f}"), ("repair_bits_per_frame", "repair/frame", "{:.1f}"),
    ("damaged_packets", "damaged pkts", "{}"), ("refreshes", "refreshes", "{}"), ("cue_failures", "cue fails", "{}"),
    ("lookups", "lookups", "{}"), ("repaired_slots", "repaired", "{}"), ("frames_lost", "lost", "{}"),
    ("faults", "faults", "{}"), ("frames_to_resync", "to resync", "{}"), ("psnr_db", "PSNR dB", "{:.2f}")]

TEXT_KEYS = {"scenario", "regime", "rule", "system", "reason"}


def cell(row: dict, key: str, fmt: str) -> str:
    """``fmt`` applied to ``row[key]``; '-' for a missing or null value."""
    value = row.get(key)
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def rows_table(rows: Sequence[dict], title: str, drop: Sequence[str] = (),
               columns: Sequence[Column] = COLUMNS) -> Table:
    """A rich table of ``rows`` with ``columns`` (minus ``drop``)."""
    table = Table(title=title, title_justify="left")
    cols = [c for c in columns if c[0] not in drop]
    for key, label, _ in cols:
        table.add_column(label, justify="left" if key in TEXT_KEYS else "right")
    for r in rows:
        table.add_row(*(cell(r, key, fmt) for key, _, fmt in cols))
    return table
