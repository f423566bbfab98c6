"""The live page (`semcom serve --http PORT`): its JSON and PNG endpoints over plain HTTP, and the page itself
in a real headless Chromium (driven by playwright) while a sender streams."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from semcom.config import LinkConfig, ProtectionConfig
from semcom.live.client import SendConfig, send_frames
from semcom.live.local import LocalServer
from semcom.live.schemes import SphereSender
from semcom.live.server import ServeConfig
from semcom.sources import open_source


@pytest.fixture(scope="module")
def model():
    from semcom.models import load_autoencoder

    return load_autoencoder()


def streaming(port: int, model, frames: int, fps: float, **state):
    """Start a sphere64 sender on a thread, paced at ``fps``; returns the thread (its ``result`` when done)."""
    hp = model.hparams
    s = SphereSender(model, LinkConfig(d=hp["d"], height=hp["height"], width=hp["width"]), ProtectionConfig())
    clip = open_source("cam_shake", frames=frames).frames
    thread = threading.Thread(daemon=True, target=lambda: setattr(thread, "result", asyncio.run(
        send_frames(SendConfig(port=port), s, clip, fps=fps, **state))))
    thread.start()
    return thread


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_json_png_and_html_endpoints(tmp_path, model):
    from PIL import Image

    with LocalServer(ServeConfig(out=tmp_path), http=True) as srv:
        base = f"http://127.0.0.1:{srv.http_port}"
        streaming(srv.port, model, 6, fps=100.0, state_path=tmp_path / "keep.npz").join(30)   # kept open
        status, ctype, body = get(f"{base}/api/sessions")
        assert status == 200 and ctype == "application/json"
        data = json.loads(body)
        (row,) = data["sessions"]
        assert row["frames"] == 6 and row["latest_t"] == 5 and data["auth"] == "open"
        for key in ("bits_per_frame_wire", "hit_rate", "memory_size", "refreshes", "lost_frames"):
            assert key in row
        status, ctype, png = get(f"{base}/frame/{row['session']}.png")
        assert status == 200 and ctype == "image/png"
        on_disk = Image.open(tmp_path / row["session"] / "frame_000005.png")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(on_disk))
        status, ctype, page = get(base + "/")
        assert status == 200 and ctype.startswith("text/html") and row["session"].encode() in page
        assert get(f"{base}/frame/{'0' * 16}.png")[0] == 404 and get(f"{base}/nothing")[0] == 404
        streaming(srv.port, model, 2, fps=100.0).join(30)            # a session that ends stays on the page
        rows = json.loads(get(f"{base}/api/sessions")[2])["sessions"]
        assert [r["state"] for r in rows] == ["live", "ended"] and rows[1]["frames"] == 2
        assert get(f"{base}/frame/{rows[1]['session']}.png")[0] == 200


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_page_in_headless_chromium_during_a_live_send(tmp_path, model):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium on this system (apt-get install chromium)")
    with LocalServer(ServeConfig(out=tmp_path), http=True) as srv:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{srv.http_port}/", timeout=10_000)
                assert page.query_selector("section.session") is None       # nothing sent yet
                sending = streaming(srv.port, model, 60, fps=15.0)        # the page's script must show it
                card = page.wait_for_selector("section.session img", timeout=10_000)
                page.wait_for_function("document.querySelector('section.session img').naturalWidth > 0",
                                       timeout=10_000)
                frames = card.evaluate("img => +img.closest('section').querySelector('td[data-key=frames]')"
                                       ".textContent")
                page.wait_for_function(   # the script refreshes the numbers as frames arrive
                    f"+document.querySelector('td[data-key=frames]').textContent > {frames}", timeout=10_000)
                text = page.inner_text("section.session")
                for label in ("bits/frame", "hit rate", "memory size", "refreshes", "lost frames"):
                    assert label in text
                hit_rate = float(page.inner_text("td[data-key=hit_rate]"))
                assert 0.0 <= hit_rate <= 1.0
                src = page.get_attribute("section.session img", "src")
                assert src.startswith("/frame/") and ".png?t=" in src
            finally:
                browser.close()
        sending.join(30)
        assert sending.result.summary["frames"] == 60
