"""``report.html`` of a run folder: tables, figures, video and the config, in one static page."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from semcom.report.tables import COLUMNS, Column, cell

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}img,video{max-width:100%}
code{background:#f4f4f4;padding:1px 4px}"""


def table_html(rows: Sequence[dict], columns: Sequence[Column] = COLUMNS) -> str:
    """An HTML table of ``rows`` with ``columns`` (key, label, format)."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(r, k, fmt))}</td>" for k, _, fmt in columns)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_page(out: Path, title: str, blocks: Sequence[str], figures: Sequence[Path] = (),
               video: Path | None = None, config: dict | None = None) -> Path:
    """Write ``out/report.html``: ``blocks`` (HTML), then figures, video and config (relative paths)."""
    parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{STYLE}</style>",
             f"<h1>{html.escape(title)}</h1>", *blocks]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [f'<p><img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}"></p>' for p in figures]
    if video is not None:
        parts.append(f'<h2>Original | reconstruction</h2><p>Bar under the reconstruction: green = hit '
                     f'(index sent), red = miss (latent sent).</p><video controls loop src="{html.escape(video.name)}">'
                     "</video>")
    if config is not None:
        parts.append(f"<h2>Config</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_report(out: Path, results: dict, config: dict, figures: Sequence[Path],
                 video: Path | None = None, title: str = "semcom run") -> Path:
    """The report of ``semcom run``."""
    intro = ("<p>Bits per frame in two accountings: <b>eq. 3</b> (the paper: ceil(log2 M) bits per index, "
             "8d per latent, nothing else) and <b>wire</b> (the length of the real bitstream: every symbol, "
             f"flag, the stream header and CRC, {results.get('header_bits', 0)} bits). gamma, eta and C_R use "
             "the wire bits; <code>results.json</code> also holds the eq. 3 versions.</p>")
    blocks = [intro, "<h2>Summary per scenario and rule</h2>", table_html(results["summary"]),
              "<h2>Per regime</h2>", table_html(results["rows"])]
    if results["rows"] and "refreshes" in results["rows"][0]:
        from semcom.report.tables import FAULT_COLUMNS

        blocks += ["<h2>Faults and their repair (docs/faults.md)</h2>", table_html(results["rows"], FAULT_COLUMNS)]
    return write_page(out, title, blocks, figures, video, config)
