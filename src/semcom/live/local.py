"""A live server (and optionally a loss shim in front of it) on its own event loop in a background thread.

For benchmarks, tests and notebooks that want a real server on loopback inside the current process::

    with LocalServer(ServeConfig(out=tmp, transport="udp"), shim=dict(loss=0.1)) as srv:
        asyncio.run(send_frames(SendConfig(port=srv.port, transport="udp"), sender, frames))

``srv.port`` is the shim's port when there is one (the server's is ``srv.server.port``); ``srv.call(fn)`` runs
``fn()`` on the server's loop and returns its result (read the server's state there, not from another thread).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from .server import LiveServer, ServeConfig
from .shim import LossShim


class LocalServer:
    def __init__(self, config: ServeConfig, shim: dict | None = None, http: bool = False, log=None):
        self.config, self.shim_args, self.http, self.log = config, shim, http, log
        self.server: LiveServer | None = None
        self.shim: LossShim | None = None
        self.http_port: int | None = None
        self._ready: Future = Future()

    @property
    def port(self) -> int:
        return self.shim.port if self.shim is not None else self.server.port

    def __enter__(self) -> LocalServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        self._ready.result(timeout=60)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def call(self, fn, timeout: float = 30.0):
        """``fn()`` on the server's event loop; its result."""
        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        page = None
        try:
            self.server = LiveServer(self.config, self.log)
            await self.server.start()
            if self.shim_args is not None:
                self.shim = LossShim((self.config.host, self.server.port), **self.shim_args)
                await self.shim.start()
            if self.http:
                from .page import start_page

                page = await start_page(self.server, self.config.host, 0)
                self.http_port = page.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._ready.set_exception(exc)
            return
        self._ready.set_result(True)
        try:
            await self._stop.wait()
        finally:
            if page is not None:
                page.close()
            if self.shim is not None:
                self.shim.close()
            await self.server.close()
