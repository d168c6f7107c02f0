"""What a comparison shows: markdown tables with 95 % intervals, the region map (where the regenerated map
beats the photo, significantly), and plots with error bars, all from the ``results.json`` dictionary so
they can be re-made from a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..evaluate.report import markdown_table
from ..fileio import atomic_path

_METRICS = (
    ("lpips", "LPIPS ↓", 1, 3),
    ("miou", "mIoU % ↑", 100, 1),
    ("psnr", "PSNR dB ↑", 1, 1),
    ("ms_ssim", "MS-SSIM ↑", 1, 3),
)
_PLOT_KEYS = ("lpips", "miou")
_TITLES = {"lpips": "LPIPS ↓", "miou": "mIoU % ↑"}


def interval(entry: dict[str, float], scale: float = 1, digits: int = 3) -> str:
    """``value [lo, hi]``."""
    v, lo, hi = (scale * entry[k] for k in ("value", "lo", "hi"))
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _metric(r: dict[str, Any], key: str) -> str:
    _, _, scale, digits = next(m for m in _METRICS if m[0] == key)
    return interval(r[key], scale, digits)


def _receiver(s: dict[str, Any]) -> str:
    info = s.get("model_info") or {}
    kind = f"{info['kind']} W{info['weight_bits']}" if info else ""
    backend = f", {info['backend']['name']} backend" if info.get("backend") else ""
    return f"{s['model']} ({kind}{backend}) {s['receiver']['sampler']}" if info else s["receiver"]["sampler"]


def _content(r: dict[str, Any]) -> str:
    text = "/".join(map(str, r["factors"]))
    if r["quality"]:
        text += " q" + "/".join(
            map(str, r["quality"][:1] + r["quality"][-1:] if len(r["quality"]) > 1 else r["quality"])
        )
    return text


def _mcs(r: dict[str, Any]) -> str:
    m = r.get("mcs") or []
    return "–" if not m else m[0] if len(m) == 1 else f"{m[0]}..{m[-1]}"


def _kid(r: dict[str, Any]) -> str:
    # with fewer images than one KID subset there is one subset and no spread to show
    return f"{r['kid']:.4f} ± {r['kid_std']:.4f}" if r["kid_std"] > 0 else f"{r['kid']:.4f}"


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    power = result.get("power", {})
    shift = (
        f"SNR = average transmit power per real channel use (1 for every scheme) over the noise variance per real "
        f"use; the paper's PSNR of the analog map is this SNR minus 10 log10 K = {power.get('paper_shift_db', 0):.1f} "
        "dB on average (K present classes)"
        if s.get("power", "unit") == "unit"
        else "SNR axis = the paper's PSNR of the analog map (one-hot symbols, peak 1, average power 1/K): the analog "
        f"map has {power.get('paper_shift_db', 0):.1f} dB less average power than the digital schemes"
    )
    parts = [
        f"# Semantic vs digital transmission: {s['data']}, {result['images']['count']} images, "
        f"{s.get('channel', 'awgn')} channel, MCS {s['mcs']} ({s.get('link_mode', 'ldpc')} link), cleanup "
        f"{s['cleanup']}, receiver {_receiver(s)}\n\n{shift}. Cells: mean over images [95 % bootstrap interval]; "
        "k/n = complex channel uses per source dimension (H x W x 3).\n"
    ]
    header = ["scheme", "SNR dB", "k/n used", "lost %", "MCS", "map f / image q", *(m[1] for m in _METRICS)]
    fid_note = True
    for budget in map(lambda b: f"{b:g}", s["budgets"]):
        rows = []
        for name, by_budget in result["results"].items():
            for snr, r in by_budget[budget].items():
                rows.append(
                    [
                        name,
                        snr,
                        f"{r['kn_used']:.3f}",
                        f"{100 * r['failure_rate']:.0f}",
                        _mcs(r),
                        _content(r),
                        *[_metric(r, m[0]) for m in _METRICS],
                    ]
                )
                fid_note = fid_note and "fid" not in r
        first = next(iter(result["results"].values()))[budget]
        kn = next(iter(first.values()))["kn_budget"]
        parts.append(
            f"\n## Budget {budget} real channel uses per pixel (k/n = {kn:.3f})\n\n" + markdown_table(header, rows)
        )
    if fid_note:
        parts.append("\nFID/KID left out: computed only with --fid-kid from at least 100 images.\n")
    else:
        rows = [
            [name, budget, f"{r['fid']:.1f}", _kid(r)]
            for name, by_budget in result["results"].items()
            for budget, by_snr in by_budget.items()
            for snr, r in by_snr.items()
            if "fid" in r
        ]
        parts.append(
            f"\n## FID / KID at {s['view_snr']:g} dB\n\n"
            + markdown_table(["scheme", "budget cpp", "FID ↓", "KID ↓"], rows)
        )
    o = result["original"]
    parts.append(f"\nOriginal photos: mIoU {_metric(o, 'miou')} % (the segmentation network's ceiling).\n")
    if result.get("regions"):
        parts.append(
            "\n## Region map: best regenerated map minus best photo (paired, 95 % interval)\n\n" + regions_table(result)
        )
    rows = [
        [f, f"{c['analog_cpp']:.3f}", f"{c['map_bits_per_pixel']:.3f}", *[_metric(c, m[0]) for m in _METRICS]]
        for f, c in result["map_cost"].items()
    ]
    parts.append(
        "\n## What a cheaper map costs (exact map at 1/f resolution, regenerated)\n\n"
        + markdown_table(
            ["map downsampling f", "analog cpp", "deflated map bit/pixel", *(m[1] for m in _METRICS)], rows
        )
    )
    if result.get("rayleigh"):
        parts.append("\n" + rayleigh_table(result))
    return "".join(parts)


def regions_table(result: dict[str, Any]) -> str:
    header = [
        "budget cpp (k/n)",
        "SNR dB",
        "LPIPS: map − photo",
        "LPIPS winner",
        "mIoU pts: map − photo",
        "mIoU winner",
    ]
    rows = []
    for budget, by_snr in result["regions"].items():
        kn = next(iter(next(iter(result["results"].values()))[budget].values()))["kn_budget"]
        for snr, e in by_snr.items():
            rows.append(
                [
                    f"{budget} ({kn:.3f})",
                    snr,
                    f"{interval(e['lpips']['difference'])} ({e['lpips']['map']} vs {e['lpips']['photo']})",
                    e["lpips"]["winner"],
                    f"{interval(e['miou']['difference'], 100, 1)} ({e['miou']['map']} vs {e['miou']['photo']})",
                    e["miou"]["winner"],
                ]
            )
    return markdown_table(header, rows)


def rayleigh_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    header = ["budget cpp", "scheme", "SNR dB", "outage %", "fades below grid %", "LPIPS ↓", "mIoU % ↑"]
    rows = [
        [
            budget,
            name,
            snr,
            f"{100 * r['outage']:.1f}",
            f"{100 * r['below_grid']:.1f}",
            _metric(r, "lpips"),
            _metric(r, "miou"),
        ]
        for name, by_budget in result["rayleigh"].items()
        for budget, by_snr in by_budget.items()
        for snr, r in by_snr.items()
    ]
    return (
        f"## Rayleigh fading: expected quality over {s['fades']} fades per image and SNR (from the AWGN grid)\n\n"
        + markdown_table(header, rows)
    )


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


# An ideal bound is drawn dashed in its real scheme's colour, so the grid's 12 schemes need 8 colours,
# not the 12 that tab10 cannot give; the learned baseline is black.
_COLOURS = {
    "analog-map": "C0",
    "digital-map": "C1",
    "digital-image": "C2",
    "digital-image-webp": "C3",
    "digital-image-jp2": "C4",
    "digital-image-hevc": "C5",
    "digital-image-avif": "C6",
    "deepjscc": "black",
}


def _style(name: str) -> dict[str, Any]:
    ideal = name.startswith("ideal")
    style = {"ls": "--" if ideal else "-", "marker": "o", "ms": 3, "lw": 1.2, "label": name, "capsize": 2}
    colour = _COLOURS.get(name.replace("ideal-", "digital-", 1) if ideal else name)
    return style | ({"color": colour} if colour else {}) | ({"marker": "s"} if name == "deepjscc" else {})


def _errorbar(ax, xs, entries, key):
    scale = 100 if key == "miou" else 1
    ys = [scale * e[key]["value"] for e in entries]
    err = [
        [y - scale * e[key]["lo"] for y, e in zip(ys, entries)],
        [scale * e[key]["hi"] - y for y, e in zip(ys, entries)],
    ]
    return xs, ys, err


def plot_vs_snr(result: dict[str, Any], path: str | Path, key: str = "results") -> None:
    """LPIPS and mIoU against SNR with 95 % intervals, one column per budget, one line per scheme."""
    s = result["settings"]
    budgets = [f"{b:g}" for b in sorted(s["budgets"], reverse=True)]
    plt, fig, axes = _figure(len(budgets), len(_PLOT_KEYS))
    for col, budget in enumerate(budgets):
        for row, metric in enumerate(_PLOT_KEYS):
            ax = axes[row][col]
            for name, by_budget in result[key].items():
                snrs = sorted(by_budget[budget], key=float)
                xs, ys, err = _errorbar(ax, [float(p) for p in snrs], [by_budget[budget][p] for p in snrs], metric)
                ax.errorbar(xs, ys, yerr=err, **_style(name))
            if metric == "miou":
                ax.axhline(
                    100 * result["original"]["miou"]["value"], color="gray", ls=":", lw=1, label="original photo"
                )
            kn = next(iter(next(iter(result["results"].values()))[budget].values()))["kn_budget"]
            ax.set_title(f"{_TITLES[metric]}, {budget} cpp (k/n {kn:.3f})", fontsize=8)
            ax.set_xlabel("SNR (dB)" if key == "results" else "average SNR (dB), Rayleigh")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6)
    _save(plt, fig, path)


def plot_vs_budget(result: dict[str, Any], path: str | Path) -> None:
    """LPIPS and mIoU against the bandwidth ratio k/n (log axis) at the view SNR, with 95 % intervals."""
    snr = f"{result['settings']['view_snr']:g}"
    plt, fig, axes = _figure(len(_PLOT_KEYS), 1)
    for ax, metric in zip(axes[0], _PLOT_KEYS):
        for name, by_budget in result["results"].items():
            budgets = sorted(by_budget, key=float)
            entries = [by_budget[b][snr] for b in budgets]
            xs, ys, err = _errorbar(ax, [e["kn_budget"] for e in entries], entries, metric)
            ax.errorbar(xs, ys, yerr=err, **_style(name))
        if metric == "miou":
            ax.axhline(100 * result["original"]["miou"]["value"], color="gray", ls=":", lw=1, label="original photo")
        ax.set_xscale("log")
        ax.set_xlabel("bandwidth ratio k/n")
        ax.set_title(f"{_TITLES[metric]} at {snr} dB, {result['settings'].get('channel', 'awgn')}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6)
    _save(plt, fig, path)


def plot_regions(result: dict[str, Any], path: str | Path) -> None:
    """The region map over (SNR, k/n): who wins on LPIPS and on mIoU; pale where the interval includes 0."""
    if not result.get("regions"):
        return
    colours = {"map": (0.2, 0.5, 0.9), "photo": (0.9, 0.5, 0.1), "tie": (0.8, 0.8, 0.8)}
    budgets = sorted(result["regions"], key=float)
    snrs = sorted(next(iter(result["regions"].values())), key=float)
    plt, fig, axes = _figure(2, 1)
    for ax, metric in zip(axes[0], _PLOT_KEYS):
        for y, budget in enumerate(budgets):
            for x, snr in enumerate(snrs):
                e = result["regions"][budget][snr][metric]
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, color=colours[e["winner"]]))
                scale, digits = (100, 1) if metric == "miou" else (1, 2)
                ax.text(x, y, f"{scale * e['difference']['value']:+.{digits}f}", ha="center", va="center", fontsize=6)
        kn = [next(iter(next(iter(result["results"].values()))[b].values()))["kn_budget"] for b in budgets]
        ax.set_xticks(range(len(snrs)), snrs)
        ax.set_yticks(range(len(budgets)), [f"{k:.3f}" for k in kn])
        ax.set_xlim(-0.5, len(snrs) - 0.5)
        ax.set_ylim(-0.5, len(budgets) - 0.5)
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("k/n")
        ax.set_title(f"{_TITLES[metric]}: map − photo (blue map, orange photo, grey n.s.)", fontsize=7)
    _save(plt, fig, path)
