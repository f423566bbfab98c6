"""The live link: the schemes' endpoints over real sockets (TCP or UDP), with feedback, sessions and keys.

One module per concept:

* :mod:`~semcom.live.framing` — the socket packet: session id, sequence number, type, length, payload, and
  its HMAC-SHA256 (``--key-file``) or AEAD (``--encrypt``) seal;
* :mod:`~semcom.live.feedback` — the receiver's answers (ACK, refresh/resync requests, repair bitmaps) as bytes;
* :mod:`~semcom.live.schemes` — each scheme's endpoints as per-frame exchanges: the sphere64 memory link with
  its protected packets (:mod:`semcom.link.session`), the codec link (:mod:`semcom.schemes.codec_link`);
* :mod:`~semcom.live.sessions` — the server's sessions: limits, idle timeout, stats, ``session.json``;
* :mod:`~semcom.live.server` / :mod:`~semcom.live.client` — ``semcom serve`` and ``semcom send`` (asyncio);
* :mod:`~semcom.live.state` — a sender's state file, to resume a session after a disconnect;
* :mod:`~semcom.live.shim` — a UDP relay that loses, delays, duplicates and reorders datagrams;
* :mod:`~semcom.live.page` — the live page (``semcom serve --http PORT``);
* :mod:`~semcom.live.bench` — frames per second and latency over loopback against the in-process link.

See docs/live.md.
"""
