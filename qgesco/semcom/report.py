"""What a comparison shows: markdown tables and the two views (quality vs SNR at each budget, quality vs
budget at one SNR), all from the ``results.json`` dictionary so they can be re-made from a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..evaluate.report import cell, markdown_table
from ..fileio import atomic_path

_KEYS = ("lpips", "miou", "fid", "kid")
_PLOT_KEYS = ("lpips", "miou")
_TITLES = {"lpips": "LPIPS ↓", "miou": "mIoU % ↑"}


def _receiver(s: dict[str, Any]) -> str:
    info = s.get("model_info") or {}
    kind = f"{info['kind']} W{info['weight_bits']}" if info else ""
    backend = f", {info['backend']['name']} backend" if info.get("backend") else ""
    return f"{s['model']} ({kind}{backend}) {s['receiver']['sampler']}" if info else s["receiver"]["sampler"]


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    parts = [
        f"# Semantic vs digital transmission: {s['data']}, {result['images']['count']} images, "
        f"{s.get('channel', 'awgn')} channel, code/modulation {s['mcs']}, receiver {_receiver(s)}\n"
    ]
    metrics = ["LPIPS ↓", "mIoU % ↑", "FID ↓", "KID ↓"]
    header = ["scheme", "SNR dB", "cpp used", "failed %", "map f / image q", *metrics]
    for budget in map(lambda b: f"{b:g}", s["budgets"]):
        rows = []
        for name, by_budget in result["results"].items():
            for snr, r in by_budget[budget].items():
                content = "/".join(map(str, r["factors"]))
                if r["quality"]:
                    content += " q" + "/".join(map(str, r["quality"]))
                rows.append(
                    [
                        name,
                        snr,
                        f"{r['cpp_used']:.3f}",
                        f"{100 * r['failure_rate']:.0f}",
                        content,
                        *[cell(k, r[k]) for k in _KEYS],
                    ]
                )
        parts.append(f"\n## Budget {budget} real channel uses per pixel\n\n" + markdown_table(header, rows))
    o = result["original"]
    parts.append(f"\nOriginal photos: mIoU {cell('miou', o['miou'])} % (the segmentation network's ceiling).\n")
    rows = [
        [
            f,
            f"{c['analog_cpp']:.3f}",
            f"{c['map_bits_per_pixel']:.3f}",
            f"{c['digital_cpp']:.3f}" if "digital_cpp" in c else "–",
            *[cell(k, c[k]) for k in _KEYS],
        ]
        for f, c in result["map_cost"].items()
    ]
    parts.append(
        "\n## What a cheaper map costs (exact map at 1/f resolution, regenerated)\n\n"
        + markdown_table(
            ["map downsampling f", "analog cpp", "deflated map bit/pixel", f"digital cpp ({s['mcs']})", *metrics], rows
        )
    )
    return "".join(parts)


def _figure(panels: int, rows: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(rows, panels, figsize=(3.6 * panels, 3.0 * rows), dpi=120, squeeze=False)


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _style(name: str) -> dict[str, Any]:
    style = {"ls": "--" if name.startswith("ideal") else "-", "marker": "o", "lw": 1.2, "label": name}
    # the learned baseline in black: with 11 schemes the colour cycle of 10 would repeat on it
    return style | ({"color": "black", "marker": "s"} if name == "deepjscc" else {})


def plot_vs_snr(result: dict[str, Any], path: str | Path) -> None:
    """LPIPS and mIoU against SNR, one column per budget, one line per scheme."""
    s = result["settings"]
    budgets = [f"{b:g}" for b in sorted(s["budgets"], reverse=True)]
    plt, fig, axes = _figure(len(budgets), len(_PLOT_KEYS))
    for col, budget in enumerate(budgets):
        for row, key in enumerate(_PLOT_KEYS):
            ax = axes[row][col]
            scale = 100 if key == "miou" else 1
            for name, by_budget in result["results"].items():
                snrs = sorted(by_budget[budget], key=float)
                ax.plot([float(p) for p in snrs], [scale * by_budget[budget][p][key] for p in snrs], **_style(name))
            if key == "miou":
                ax.axhline(100 * result["original"]["miou"], color="gray", ls=":", lw=1, label="original photo")
            ax.set_title(f"{_TITLES[key]} at {budget} cpp, {s.get('channel', 'awgn')}")
            ax.set_xlabel("channel PSNR (dB)")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    _save(plt, fig, path)


def plot_vs_budget(result: dict[str, Any], path: str | Path) -> None:
    """LPIPS and mIoU against the budget (log axis) at the view SNR, one line per scheme."""
    snr = f"{result['settings']['view_snr']:g}"
    plt, fig, axes = _figure(len(_PLOT_KEYS), 1)
    for ax, key in zip(axes[0], _PLOT_KEYS):
        scale = 100 if key == "miou" else 1
        for name, by_budget in result["results"].items():
            budgets = sorted(by_budget, key=float)
            ax.plot([float(b) for b in budgets], [scale * by_budget[b][snr][key] for b in budgets], **_style(name))
        if key == "miou":
            ax.axhline(100 * result["original"]["miou"], color="gray", ls=":", lw=1, label="original photo")
        ax.set_xscale("log")
        ax.set_xlabel("real channel uses per pixel")
        ax.set_title(f"{_TITLES[key]} at {snr} dB, {result['settings'].get('channel', 'awgn')}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    _save(plt, fig, path)
