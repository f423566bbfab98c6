"""``semcom serve``: the live receiver, many sessions over TCP or UDP (semcom.live, docs/live.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from semcom.commands import HELP
from semcom.commands._common import add_threads_arg, bounded_int
from semcom.errors import ConfigError


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); a bad one is a one-line error naming ``flag``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"invalid {flag}={text!r}: expected HOST:PORT with a port in 0..65535")
    return host, int(port)


def byte_size(text: str) -> int:
    """An argparse type: a byte count with an optional K, M or G suffix (powers of 1024)."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) * scale < 1:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: a positive byte count, e.g. 65536 or 64M")
    return int(digits) * scale


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 0 < v < 1e6:
        raise argparse.ArgumentTypeError(f"{v} is outside (0, 1e6)")
    return v


def add_key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-file", type=Path, default=None,
                   help="pre-shared key: every packet carries an HMAC-SHA256 under it, with sequence numbers "
                        "against replay (without it the server accepts anyone)")
    p.add_argument("--encrypt", action="store_true",
                   help="with --key-file: encrypt and authenticate every packet (ChaCha20-Poly1305)")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help=HELP["serve"])
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to listen on (port 0: any free)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder of the sessions' frames and session.json")
    p.add_argument("--transport", default="tcp", choices=["tcp", "udp"])
    add_key_args(p)
    p.add_argument("--max-sessions", type=bounded_int(1, 4096), default=16, help="concurrent sessions (default 16)")
    p.add_argument("--max-packet-bytes", type=byte_size, default=1 << 20, help="largest packet read (default 1M)")
    p.add_argument("--max-memory", type=byte_size, default=64 << 20,
                   help="largest memory a session may hold at m_max, in bytes (default 64M)")
    p.add_argument("--idle-timeout", type=positive_float, default=60.0,
                   help="seconds of silence before a session or a connection is closed (default 60)")
    p.add_argument("--http", type=bounded_int(0, 65535), default=None, metavar="PORT",
                   help="serve a live page of the sessions on this port (0: any free)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    add_threads_arg(p)
    p.set_defaults(main=main)


def main(args) -> int:
    from semcom.live.framing import read_key_file
    from semcom.live.server import ServeConfig

    host, port = parse_address(args.listen, "--listen")
    if args.encrypt and args.key_file is None:
        raise ConfigError("--encrypt needs --key-file")
    if args.max_packet_bytes < 1024:
        raise ConfigError(f"invalid --max-packet-bytes={args.max_packet_bytes}: at least 1024")
    key = read_key_file(args.key_file) if args.key_file is not None else None
    config = ServeConfig(host, port, args.output, args.transport, key, args.encrypt, args.max_sessions,
                         args.max_packet_bytes, args.max_memory, args.idle_timeout)
    from semcom.threads import frame_work

    with frame_work():  # sessions decode frame by frame on worker threads in parallel; one torch thread each
        return asyncio.run(_serve(config, args.http, args.json))


def _printer(as_json: bool):
    def log(event: dict) -> None:
        if as_json:
            line = json.dumps(event)
        elif event["event"] == "session_closed":
            rate = event.get("hit_rate")
            line = (f"session {event['session']} closed ({event['reason']}): {event['frames']} frames, "
                    f"{event['bytes']} bytes, hit rate {rate if rate is None else round(rate, 3)}, "
                    f"lost {event['lost_frames']}, refreshes {event['refreshes']}")
        else:
            line = " ".join(f"{k}={v}" for k, v in event.items() if k != "event") + f" ({event['event']})"
        print(line, flush=True)

    return log


async def _serve(config, http_port: int | None, as_json: bool) -> int:
    from semcom.live.page import start_page
    from semcom.live.server import LiveServer, serve_forever

    log = _printer(as_json)
    server = LiveServer(config, log)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.host}:{config.port} ({config.transport}): "
                          f"{exc.strerror or exc}") from None
    page = None
    if http_port is not None:
        try:
            page = await start_page(server, config.host, http_port)
        except OSError as exc:
            await server.close()
            raise ConfigError(f"cannot serve the page on {config.host}:{http_port}: {exc.strerror or exc}") from None
    if server.sealer.mode == "open":
        print("semcom serve: no --key-file given: accepting packets from anyone", file=sys.stderr, flush=True)
    event = {"event": "listening", "transport": config.transport, "host": config.host, "port": server.port,
             "auth": server.sealer.mode, "output": str(config.out),
             "http_port": page.sockets[0].getsockname()[1] if page else None}
    if as_json:
        print(json.dumps(event), flush=True)
    else:
        http = f", page on http://{config.host}:{event['http_port']}/" if page else ""
        print(f"listening on {config.transport} {config.host}:{server.port} ({server.sealer.mode}), writing to "
              f"{config.out}{http}", flush=True)
    try:
        await serve_forever(server)
    finally:
        if page is not None:
            page.close()
    return 0
