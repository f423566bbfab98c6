"""The live page of ``semcom serve --http PORT``: every session's latest frame and numbers, as they happen.

Three read-only routes on a small asyncio HTTP/1.1 server (GET only, one request per connection, bounded
request size and time):

* ``/`` — the page: one card per session (latest decoded frame, bits per frame, hit rate, memory size,
  refreshes, lost frames), live ones first, then the last few that ended, rendered on the server and refreshed
  by a script every half second;
* ``/api/sessions`` — the same as JSON, with the server's packet counters;
* ``/frame/<session>.png`` — a session's latest decoded frame.
"""

from __future__ import annotations

import asyncio
import html
import json
import re

from .aio import within

#: Largest request head read; longer ones are refused.
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
_FRAME = re.compile(r"^/frame/([0-9a-f]{16})\.png$")
_FIELDS = (("frames", "frames"), ("bits_per_frame_wire", "bits/frame"),
           ("feedback_bits_per_frame", "feedback bits/frame"), ("hit_rate", "hit rate"),
           ("memory_size", "memory size"), ("refreshes", "refreshes"),
           ("lost_frames", "lost frames"))


def sessions_json(server) -> dict:
    """What ``/api/sessions`` returns: each session's summary and latest frame number, and the server's counters."""
    rows = [s.summary() | {"latest_t": s.latest_t, "state": "live"} for s in list(server.table.sessions.values())]
    rows += [summary | {"latest_t": t, "state": "ended"} for summary, _, t in reversed(server.table.ended.values())]
    return {"auth": server.sealer.mode, "transport": server.config.transport, "stats": dict(server.stats),
            "sessions": rows}


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def _card(row: dict) -> str:
    sid = html.escape(row["session"])
    img = (f'<img alt="latest frame of {sid}" src="/frame/{sid}.png?t={row["latest_t"]}">'
           if row["latest_t"] is not None else '<div class="noframe">no frame yet</div>')
    cells = "".join(f'<tr><th>{label}</th><td data-key="{key}">{_fmt(row.get(key))}</td></tr>'
                    for key, label in _FIELDS)
    return (f'<section class="session {row["state"]}" data-session="{sid}"><h2>{sid} <small>'
            f'{html.escape(row["scheme"])} over {html.escape(row["transport"])}, <span class="state">{row["state"]}'
            f'</span></small></h2>{img}<table>{cells}</table></section>')


_SCRIPT = """
const FIELDS = %s;
function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(4)));
  return String(v);
}
async function refresh() {
  try {
    const r = await fetch("/api/sessions", {cache: "no-store"});
    const data = await r.json();
    const root = document.getElementById("sessions");
    const seen = new Set();
    for (const s of data.sessions) {
      seen.add(s.session);
      let card = root.querySelector(`section[data-session="${s.session}"]`);
      if (!card) {
        card = document.createElement("section");
        card.className = "session"; card.dataset.session = s.session;
        card.innerHTML = `<h2>${s.session} <small>${s.scheme} over ${s.transport}, ` +
          `<span class="state"></span></small></h2>` +
          `<div class="noframe">no frame yet</div><table>` +
          FIELDS.map(([k, l]) => `<tr><th>${l}</th><td data-key="${k}"></td></tr>`).join("") + "</table>";
        root.appendChild(card);
      }
      for (const [k] of FIELDS) card.querySelector(`td[data-key="${k}"]`).textContent = fmt(s[k]);
      card.className = `session ${s.state}`;
      card.querySelector(".state").textContent = s.state;
      if (s.latest_t !== null) {
        let img = card.querySelector("img");
        if (!img) {
          img = document.createElement("img");
          img.alt = `latest frame of ${s.session}`;
          card.querySelector(".noframe").replaceWith(img);
        }
        const src = `/frame/${s.session}.png?t=${s.latest_t}`;
        if (img.getAttribute("src") !== src) img.setAttribute("src", src);
      }
    }
    for (const card of root.querySelectorAll("section.session")) if (!seen.has(card.dataset.session)) card.remove();
    document.getElementById("count").textContent = data.sessions.filter(s => s.state === "live").length;
    document.getElementById("packets").textContent = data.stats.packets;
  } catch (e) { /* the server may be restarting: try again */ }
}
setInterval(refresh, 500);
"""

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa}
#sessions{display:flex;flex-wrap:wrap;gap:1rem}.session{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:.8rem}.session img,.noframe{width:192px;height:192px;image-rendering:pixelated;display:block;background:#eee}
th{text-align:left;font-weight:normal;color:#555;padding-right:1rem}td{font-variant-numeric:tabular-nums}
h2{font-size:1rem;margin:0 0 .5rem}small{color:#777;font-weight:normal}.ended{opacity:.6}"""


def render_page(server) -> str:
    data = sessions_json(server)
    cards = "".join(_card(row) for row in data["sessions"])
    live = sum(r["state"] == "live" for r in data["sessions"])
    fields = json.dumps([[k, label] for k, label in _FIELDS])
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>semcom live</title>'
            f'<style>{_STYLE}</style></head><body><h1>semcom live</h1>'
            f'<p><span id="count">{live}</span> live sessions over {html.escape(data["transport"])} '
            f'({html.escape(data["auth"])}), <span id="packets">{data["stats"]["packets"]}</span> packets</p>'
            f'<div id="sessions">{cards}</div><script>{_SCRIPT % fields}</script></body></html>')


def _response(status: str, body: bytes, ctype: str) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def route(server, path: str) -> bytes:
    """The response to ``GET path``."""
    path = path.split("?", 1)[0]
    if path == "/":
        return _response("200 OK", render_page(server).encode(), "text/html; charset=utf-8")
    if path == "/api/sessions":
        return _response("200 OK", json.dumps(sessions_json(server)).encode(), "application/json")
    m = _FRAME.match(path)
    if m:
        sid = int(m.group(1), 16)
        s = server.table.get(sid)
        png = s.latest_png if s is not None else server.table.ended.get(sid, (None, None))[1]
        if png is not None:
            return _response("200 OK", png, "image/png")
    return _response("404 Not Found", b"not found\n", "text/plain")


async def start_page(server, host: str, port: int) -> asyncio.AbstractServer:
    """Serve the page of ``server`` (a :class:`semcom.live.server.LiveServer`) on ``host:port``."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await within(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or parts[0] != "GET":
                writer.write(_response("405 Method Not Allowed", b"GET only\n", "text/plain"))
            else:
                writer.write(route(server, parts[1]))
            await within(writer.drain(), REQUEST_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError,
                OSError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(client, host, port, limit=MAX_REQUEST)
