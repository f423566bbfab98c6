"""Human tables (rich) of a run's rows and summaries."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

COLUMNS = [("scenario", "scenario", "{}"), ("regime", "regime", "{}"), ("rule", "rule", "{}"),
           ("frames", "T", "{}"), ("bits_per_frame_paper", "bits/frame eq.3", "{:.2f}"),
           ("bits_per_frame_wire", "bits/frame wire", "{:.2f}"), ("hit_rate", "hit rate", "{:.3f}"),
           ("compression_ratio", "gamma", "{:.0f}"), ("reasoning_capacity", "C_R", "{:.2f}"),
           ("psnr_db", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("memory_size", "M", "{}")]


def rows_table(rows: Sequence[dict], title: str, drop: Sequence[str] = ()) -> Table:
    """A rich table of ``rows`` with the standard columns (minus ``drop``)."""
    table = Table(title=title, title_justify="left")
    cols = [c for c in COLUMNS if c[0] not in drop]
    for key, label, _ in cols:
        table.add_column(label, justify="left" if key in ("scenario", "regime", "rule") else "right")
    for r in rows:
        table.add_row(*(fmt.format(r[key]) for key, _, fmt in cols))
    return table
