"""What an evaluation shows: the paper's Table I and Table II as markdown, the comparison with the
reference model, every metric per model and PSNR, and the metrics-vs-PSNR plot.

Everything here reads the ``metrics.json`` dictionary only, so tables can be re-made from a
finished run (``render(json.load(open("metrics.json")))``). FID is printed as is; the paper
prints FID / 10 in its "FID (x10)" columns.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path
from .models import CALIBRATION_LABELS

#: metric key -> (column title, format); mIoU and pixel accuracy are fractions printed as %.
COLUMNS = {
    "lpips": ("LPIPS ↓", "{:.4f}"),
    "fid": ("FID ↓", "{:.2f}"),
    "kid": ("KID ↓", "{:.4f}"),
    "miou": ("mIoU % ↑", "{:.1f}"),
    "pixel_accuracy": ("pixel acc. % ↑", "{:.1f}"),
    "image_psnr": ("PSNR dB ↑", "{:.2f}"),
    "ssim": ("SSIM ↑", "{:.4f}"),
}
_PERCENT = ("miou", "pixel_accuracy")
_TABLE_METRICS = ("lpips", "fid")


def cell(key: str, value: float | None) -> str:
    """A metric value as the tables print it ('–' when not computed)."""
    if value is None:
        return "–"
    return COLUMNS[key][1].format(100 * value if key in _PERCENT else value)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _change(value: float | None, ref: float | None, fmt: str) -> str:
    if value is None:
        return "–"
    text = fmt.format(value)
    return text if not ref or value == ref else f"{text} ({(value / ref - 1) * 100:+.0f}%)"


def _psnr_columns(result: dict[str, Any]) -> list[str]:
    return [f"{p:g}" for p in result["settings"]["psnrs"]]


def _metric_cells(result: dict[str, Any], name: str) -> list[str]:
    return [cell(k, result["results"][name][p].get(k)) for p in _psnr_columns(result) for k in _TABLE_METRICS]


def _metric_header(result: dict[str, Any]) -> list[str]:
    return [f"{COLUMNS[k][0]} @{p} dB" for p in _psnr_columns(result) for k in _TABLE_METRICS]


def table_i(result: dict[str, Any]) -> str:
    """Method | weight bits | size (MB) | TFLOPs per guided step | LPIPS and FID per PSNR; changes vs the reference."""
    models, ref = result["models"], result["models"][result["settings"]["reference"]]
    rows = []
    for name, info in models.items():
        own = name == result["settings"]["reference"]
        rows.append(
            [
                name,
                _change(info["weight_bits"], None if own else ref["weight_bits"], "{}"),
                _change(info["size_mb"], None if own else ref["size_mb"], "{:.2f}"),
                _change(info["tflops"], None if own else ref["tflops"], "{:.4g}"),
                *_metric_cells(result, name),
            ]
        )
    return markdown_table(["Method", "Weight bits", "Size (MB)", "TFLOPs", *_metric_header(result)], rows)


def table_ii(result: dict[str, Any]) -> str | None:
    """Calibration | model | LPIPS and FID per PSNR, when timestep-only and noise+timestep calibrated models
    are both there."""
    tagged = [(info["calibration"], name) for name, info in result["models"].items() if info.get("calibration")]
    if {tag for tag, _ in tagged} != set(CALIBRATION_LABELS):
        return None
    rows = [
        [CALIBRATION_LABELS[tag], name, *_metric_cells(result, name)]
        for tag, name in sorted(tagged, key=lambda tn: list(CALIBRATION_LABELS).index(tn[0]))
    ]
    return markdown_table(["Calibration", "Model", *_metric_header(result)], rows)


def comparison(result: dict[str, Any]) -> str | None:
    """Each model against the reference: paired ΔLPIPS (mean ± 95% interval over images), FID ratio, ΔmIoU."""
    ref = result["settings"]["reference"]
    rows = []
    for name in result["models"]:
        if name == ref:
            continue
        for p in _psnr_columns(result):
            mine, theirs = result["results"][name][p], result["results"][ref][p]
            delta = "–"
            if "lpips" in mine:
                d = np.subtract(result["per_image"][name][p]["lpips"], result["per_image"][ref][p]["lpips"])
                half = 1.96 * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
                delta = f"{d.mean():+.4f} ± {half:.4f}"
            ratio = f"{mine['fid'] / theirs['fid']:.3f}" if "fid" in mine and theirs["fid"] > 0 else "–"
            miou = f"{(mine['miou'] - theirs['miou']) * 100:+.1f}" if "miou" in mine else "–"
            rows.append([name, p, delta, ratio, miou])
    return (
        markdown_table(["Model", "PSNR (dB)", f"ΔLPIPS vs {ref}", f"FID / FID({ref})", "ΔmIoU (points)"], rows)
        if rows
        else None
    )


def details(result: dict[str, Any]) -> str:
    keys = [k for k in COLUMNS if any(k in r for by_p in result["results"].values() for r in by_p.values())]
    rows = [
        [name, p, *[cell(k, result["results"][name][p].get(k)) for k in keys]]
        for name in result["models"]
        for p in _psnr_columns(result)
    ]
    return markdown_table(["Model", "PSNR (dB)", *[COLUMNS[k][0] for k in keys]], rows)


def render(result: dict[str, Any]) -> str:
    """The whole ``table.md``."""
    s = result["settings"]
    parts = [
        f"# Evaluation: {s['data']}, {result['images']['count']} images at {s['image_hw'][0]}x{s['image_hw'][1]}\n",
        f"Sampler {s['sampler']}, guidance {s['guidance']:g}"
        + ("" if s.get("guidance_window") is None else " at t in [{}, {}]".format(*s["guidance_window"]))
        + f", channel {s['channel']} (noise table {s['noise_table']}, "
        f"cleanup {s['cleanup']}, {'presence-compressed' if s['compress'] else 'all planes'}), seed {s['seed']}, "
        f"batch {s['batch_size']}. TFLOPs: one guided step (two forwards), bit-scaled for quantized models. "
        "FID and KID against the originals at the same size; FID as is (the paper prints FID / 10).\n",
        "## Table I\n",
        table_i(result),
    ]
    ablation = table_ii(result)
    if ablation:
        parts += ["## Table II: calibration set\n", ablation]
    against = comparison(result)
    if against:
        parts += [
            f"## Against {s['reference']}\n",
            "Paired over the same images (same received maps and x_T).\n",
            against,
        ]
    parts += ["## All metrics\n", details(result)]
    if result.get("original"):
        o = result["original"]
        parts.append(
            f"\nThe original images through the same segmentation network: mIoU {cell('miou', o['miou'])} %, "
            f"pixel accuracy {cell('pixel_accuracy', o['pixel_accuracy'])} % (the ceiling for the rows above).\n"
        )
    return "\n".join(parts)


def plot_metrics(result: dict[str, Any], path: str | Path) -> None:
    """LPIPS, FID and mIoU against channel PSNR, one line per model (the panels of the metrics computed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        k for k in ("lpips", "fid", "miou") if any(k in r for by_p in result["results"].values() for r in by_p.values())
    ]
    if not keys:
        return
    psnrs = sorted(result["settings"]["psnrs"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), dpi=120, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name in result["models"]:
            scale = 100 if key in _PERCENT else 1
            ax.plot(
                range(len(psnrs)),
                [scale * result["results"][name][f"{p:g}"][key] for p in psnrs],
                marker="o",
                lw=1,
                label=name,
            )
        if key == "miou" and result.get("original"):
            ax.axhline(100 * result["original"]["miou"], color="gray", ls="--", lw=1, label="original")
        ax.set_xticks(range(len(psnrs)), [f"{p:g}" for p in psnrs])
        ax.set_xlabel("channel PSNR (dB)")
        ax.set_title(COLUMNS[key][0])
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
