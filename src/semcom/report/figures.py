"""Figures of a run, drawn with matplotlib from ``results.json`` data only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

RULE_COLOURS = {"nearest": "#1f77b4", "hopfield": "#d62728", "paper": "#7f7f7f"}


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close ``fig``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _grouped(rows: Sequence[dict]) -> tuple[list[str], list[str], dict]:
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    return regimes, rules, {(r["regime"], r["rule"]): r for r in rows}


def bars(rows: Sequence[dict], key: str, ylabel: str, path: Path, log: bool = False,
         paper_key: str | None = None) -> Path:
    """Grouped bars of ``key`` per regime and rule (hatched: the paper's accounting, ``paper_key``)."""
    regimes, rules, by = _grouped(rows)
    x = np.arange(len(regimes))
    width = 0.8 / len(rules)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for i, rule in enumerate(rules):
        vals = [by[(g, rule)][key] for g in regimes]
        ax.bar(x + i * width, vals, width, label=f"{rule} (wire)" if paper_key else rule,
               color=RULE_COLOURS.get(rule))
        if paper_key:
            ax.bar(x + i * width, [by[(g, rule)][paper_key] for g in regimes], width * 0.45,
                   fill=False, hatch="///", edgecolor="black", label=f"{rule} (eq. 3)" if i == 0 else None)
    ax.set_xticks(x + 0.4 - width / 2, regimes, rotation=20)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def memory_over_time(timelines: dict, path: Path) -> Path:
    """Memory size against frame for every regime and rule; dots mark new-latent transmissions (Fig. 1b)."""
    regimes = list(dict.fromkeys(k.split("/")[0] for k in timelines))
    cols = 4
    rows = (len(regimes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.8 * rows), squeeze=False)
    for ax, regime in zip(axes.flat, regimes):
        for key, tl in timelines.items():
            reg, rule = key.split("/")
            if reg != regime:
                continue
            size = np.asarray(tl["memory_size"])
            miss = np.flatnonzero(np.asarray(tl["hit"]) == 0)
            ax.step(np.arange(len(size)), size, where="post", color=RULE_COLOURS.get(rule), label=rule)
            ax.plot(miss, size[miss], ".", color=RULE_COLOURS.get(rule), ms=4)
        ax.set_title(regime, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel("prototypes", fontsize=8)
    for ax in axes.flat[len(regimes):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return save_figure(fig, path)


def write_figures(results: dict, out: Path) -> list[Path]:
    """All figures of ``semcom run`` into ``out``; returns their paths."""
    rows = results["rows"]
    return [
        bars(rows, "bits_per_frame_wire", "bits per frame", out / "bits_per_frame.png", log=True,
             paper_key="bits_per_frame_paper"),
        bars(rows, "hit_rate", "hit rate", out / "hit_rate.png"),
        bars(rows, "psnr_db", "PSNR (dB)", out / "psnr.png"),
        memory_over_time(results["timelines"], out / "memory_over_time.png"),
    ]
