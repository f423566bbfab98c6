"""A fault-injection campaign: does the link resynchronise without luck under heavy load? (issue 12, item 3)

Every regime's clip streams through :class:`semcom.link.session.ProtectedLink` for every rule and several
seeds, under the load of the issue's audit: a binary symmetric channel of bit-error rate 1e-3 and 10 %
packet erasures on the forward link, and receiver-memory corruption (20 % of the IDs permuted and Gaussian
noise of sigma 0.05 on every prototype) striking at each frame with probability :data:`CORRUPT_RATE`
(about 1,600 events per 10^5 frames, as in the audit); and, for the reference, under the channel alone.
Three protocols: the paper's (cues, refresh, no memory check), ``semcom-flat`` (the earlier resync: a
digest every 16 frames, a flat audit and one repair per slot, started afresh each frame) and ``semcom``
(the hash-tree resync with per-packet checks, :mod:`semcom.link.session`).

Per protocol it reports the issue's counts and the targets of item 3:

* corruption events left unresolved at the end of their clip (target 0; also counted among the events
  with at least ``sync_every + 4`` frames left, which a resync bound can promise to close);
* frames to resync after a corruption: median, 99th percentile (target <= ``sync_every + 4``), maximum;
* frames lost under corruption against the channel alone (target: at most twice);
* frames decoded from a silently differing memory (the memories differed and the receiver did not know;
  target: ten times fewer than ``semcom-flat``), and decodes that differ from the transmitter's;
* frames decoded from a memory known to be bad (must be 0).

Each cell ``(protocol, load, regime, rule, seed)`` is independent (:func:`campaign_cell`), mapped with
:func:`semcom.sweeps.map_cells` (in this process, or on Dask workers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from semcom.config import FaultConfig, ProtectionConfig, validated
from semcom.experiments.hopfield_common import ReproConfig, link_for

RULES = ("nearest", "hopfield", "paper")
CORRUPT_RATE = 0.016
LOADS = {"corruption": {"ber": 1e-3, "erasure_rate": 0.1, "corrupt_ids": 0.2, "corrupt_sigma": 0.05,
                        "corrupt_rate": CORRUPT_RATE},
         "channel": {"ber": 1e-3, "erasure_rate": 0.1}}
PROTOCOLS = {"paper": ProtectionConfig(cue_bits=32, cue_tolerance=0.25, sync_every=0),
             "semcom-flat": ProtectionConfig(cue_bits=32, cue_tolerance=0.25, sync_every=16, resync="flat"),
             "semcom": ProtectionConfig(cue_bits=32, cue_tolerance=0.25, sync_every=16)}
FAULT_TAU = 0.98
FRAMES, SEEDS = 240, 18                   # 8 regimes x 3 rules x 18 seeds x 240 frames = 103,680 per cell set
QUICK_FRAMES, QUICK_SEEDS = 60, 1


def _shape(cfg: ReproConfig) -> tuple[int, int]:
    """Frames per clip and seeds per (regime, rule)."""
    return (cfg.frames or QUICK_FRAMES, QUICK_SEEDS) if cfg.quick else (cfg.frames or FRAMES, SEEDS)


def campaign_cells(cfg: ReproConfig, regimes, protocols=PROTOCOLS, rules=RULES) -> list[tuple]:
    """Every ``(protocol, load, regime, rule, seed)`` of a run."""
    _, seeds = _shape(cfg)
    return [(protocol, load, regime, rule, cfg.seed + s) for protocol in protocols for load in LOADS
            for regime in regimes for rule in rules for s in range(seeds)]


def campaign_cell(context: tuple, cell: tuple, _seed: int = 0) -> dict:
    """One clip of one regime under one protocol, rule, load and fault seed: the counts of :func:`summarise`.
    ``context = (cfg, model, latents by regime, protocols)``; the fault seed is the cell's own."""
    from semcom.link.session import ProtectedLink, corruption_delays

    cfg, model, latents, protocols = context
    protocol, load, regime, rule, seed = cell
    link = link_for(cfg, rule, FAULT_TAU, model)
    protection = protocols[protocol]
    pl = ProtectedLink(link, protection, validated(FaultConfig, **LOADS[load], seed=seed))
    recs = [pl.step(z)[1] for z in latents[regime]]
    n, delays = len(recs), corruption_delays(recs)
    bound = (protection.sync_every or PROTOCOLS["semcom"].sync_every) + 4
    events = [i for i, r in enumerate(recs) if r.corrupted]
    return {"protocol": protocol, "load": load, "regime": regime, "rule": rule, "seed": seed, "frames": n,
            "lost": sum(r.kind == "lost" for r in recs), "events": len(delays),
            "delays": [d for d in delays if d is not None],
            "unresolved": sum(d is None for d in delays),
            "unresolved_with_room": sum(d is None and n - i > bound for d, i in zip(delays, events, strict=True)),
            "silent": sum(r.silent for r in recs), "wrong": sum(r.wrong for r in recs),
            "decoded_known_bad": sum(r.decoded_known_bad for r in recs),
            "out_of_sync": sum(not r.in_sync for r in recs),
            "forward_bits": sum(r.forward_bits for r in recs), "feedback_bits": sum(r.feedback_bits for r in recs)}


def summarise(rows: list[dict], protocols=PROTOCOLS) -> list[dict]:
    """Per protocol (all rules) and per (protocol, rule): the campaign's counts under corruption, beside the
    frames lost under the channel alone."""
    out = []
    keys = [(p, None) for p in protocols] + [(p, r) for p in protocols for r in RULES]
    for protocol, rule in keys:
        sel = [r for r in rows if r["protocol"] == protocol and (rule is None or r["rule"] == rule)]
        hit, ref = [r for r in sel if r["load"] == "corruption"], [r for r in sel if r["load"] == "channel"]
        if not hit:
            continue
        delays = [d for r in hit for d in r["delays"]]
        frames = sum(r["frames"] for r in hit)
        ref_frames = sum(r["frames"] for r in ref)
        row = {"protocol": protocol, "rule": rule or "all", "frames": frames, "clips": len(hit),
               "events": sum(r["events"] for r in hit), "unresolved": sum(r["unresolved"] for r in hit),
               "unresolved_with_room": sum(r["unresolved_with_room"] for r in hit),
               "resync_median": float(np.median(delays)) if delays else None,
               "resync_p99": float(np.percentile(delays, 99)) if delays else None,
               "resync_max": max(delays, default=None),
               "lost_fraction": sum(r["lost"] for r in hit) / frames,
               "lost_fraction_channel": sum(r["lost"] for r in ref) / ref_frames if ref_frames else None,
               "silent": sum(r["silent"] for r in hit), "wrong": sum(r["wrong"] for r in hit),
               "decoded_known_bad": sum(r["decoded_known_bad"] for r in hit + ref),
               "out_of_sync_fraction": sum(r["out_of_sync"] for r in hit) / frames,
               "bits_per_frame": sum(r["forward_bits"] + r["feedback_bits"] for r in hit) / frames,
               "bits_per_frame_channel": (sum(r["forward_bits"] + r["feedback_bits"] for r in ref) / ref_frames
                                          if ref_frames else None)}
        out.append(row)
    return out


def targets(summary: list[dict], sync_every: int = 16) -> dict:
    """Item 3's targets for ``semcom`` (all rules), measured, each with whether it is met."""
    by = {(r["protocol"], r["rule"]): r for r in summary}
    new, old = by.get(("semcom", "all")), by.get(("semcom-flat", "all"))
    if new is None:
        return {}
    out = {"unresolved": {"value": new["unresolved"], "met": new["unresolved"] == 0},
           "unresolved_with_room": {"value": new["unresolved_with_room"], "met": new["unresolved_with_room"] == 0},
           "resync_p99": {"value": new["resync_p99"], "bound": sync_every + 4,
                          "met": new["resync_p99"] is not None and new["resync_p99"] <= sync_every + 4},
           "lost_ratio": {"value": new["lost_fraction"] / max(new["lost_fraction_channel"] or 0, 1e-12),
                          "met": new["lost_fraction"] <= 2 * (new["lost_fraction_channel"] or 0)},
           "decoded_known_bad": {"value": new["decoded_known_bad"], "met": new["decoded_known_bad"] == 0}}
    if old is not None:
        cut = old["silent"] / new["silent"] if new["silent"] else float("inf")
        out["silent_cut"] = {"value": cut, "old": old["silent"], "new": new["silent"], "met": cut >= 10}
    return out


def run_fault_campaign(cfg: ReproConfig, model, progress: Callable[[str], None] | None = None, regimes=None,
                       protocols: dict = PROTOCOLS, rules=RULES, strategy=None) -> dict:
    """The campaign (see the module docstring); ``cfg.quick``: one seed of 60-frame clips."""
    from semcom.experiments.semantic_link import encode_clip
    from semcom.sources import REGIMES
    from semcom.sweeps import map_cells

    regimes = tuple(regimes or REGIMES)
    frames, _ = _shape(cfg)
    latents = {r: encode_clip(model, r, cfg.seed, frames)[1] for r in regimes}
    cells = campaign_cells(cfg, regimes, protocols, rules)
    rows = map_cells(campaign_cell, cells, (cfg, model, latents, dict(protocols)), cfg.seed, progress, strategy)
    summary = summarise(rows, protocols)
    sync_every = protocols.get("semcom", PROTOCOLS["semcom"]).sync_every
    return {"rows": rows, "summary": summary, "targets": targets(summary, sync_every),
            "loads": LOADS, "protocols": {k: v.model_dump() for k, v in protocols.items()},
            "frames_per_clip": frames, "regimes": list(regimes), "rules": list(rules)}


def campaign_steps(cfg: ReproConfig, regimes=None, protocols: dict = PROTOCOLS, rules=RULES) -> int:
    """Cells of :func:`run_fault_campaign` (progress steps)."""
    from semcom.sources import REGIMES

    return len(campaign_cells(cfg, tuple(regimes or REGIMES), protocols, rules))


def figure(results: dict, out: Path) -> list[Path]:
    """Frames to resync after a corruption (distribution per protocol), and lost and silent frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semcom.report.figures import save_figure

    protocols = list(results["protocols"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for protocol in protocols:
        delays = sorted(d for r in results["rows"] if r["protocol"] == protocol and r["load"] == "corruption"
                        for d in r["delays"])
        if delays:
            a.step(delays, np.arange(1, len(delays) + 1) / len(delays), where="post", label=protocol)
    a.axvline(PROTOCOLS["semcom"].sync_every + 4, color="grey", ls=":", lw=0.8)
    a.set(xlabel="frames to resync after a corruption", ylabel="fraction of resolved events", xscale="symlog",
          title="resync (resolved events)")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    rows = [r for r in results["summary"] if r["rule"] == "all"]
    x = np.arange(len(rows))
    b.bar(x - 0.3, [100 * r["lost_fraction"] for r in rows], 0.3, label="lost, corruption + channel (%)")
    b.bar(x, [100 * (r["lost_fraction_channel"] or 0) for r in rows], 0.3, label="lost, channel only (%)")
    b.bar(x + 0.3, [100 * r["silent"] / r["frames"] for r in rows], 0.3, label="silently desynced decodes (%)")
    b.set_xticks(x, [r["protocol"] for r in rows])
    b.set(ylabel="% of frames", title="losses and silent desync")
    b.legend(fontsize=7)
    b.grid(alpha=0.3, axis="y")
    return [save_figure(fig, out / "fault_campaign.png")]
