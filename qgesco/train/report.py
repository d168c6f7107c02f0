"""What a training run shows: a metrics log (JSONL, mirrored to CSV), the loss curve and sample grids."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from ..fileio import atomic_path, write_json, write_text
from ..viz import grid, images_to_uint8, maps_to_uint8, save_png


class MetricsLog:
    """``metrics.jsonl`` (one line per logged step); rows beyond a resumed step are dropped."""

    def __init__(self, run_dir: Path, keep_until: int):
        self.run_dir = run_dir
        self.path = run_dir / "metrics.jsonl"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.rows = [r for r in self._read() if r["step"] <= keep_until]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def append(self, row: dict) -> None:
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def flush(self) -> None:
        """Rewrite the CSV mirror and the loss plot from the rows so far."""
        if not self.rows:
            return
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.run_dir / "metrics.csv", buf.getvalue())
        plot_losses(self.rows, self.run_dir / "loss.png")

    def finish(self, summary: dict) -> None:
        self.flush()
        write_json(self.run_dir / "summary.json", summary)


def plot_losses(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for key in ("loss", "mse", "vb"):
        if key in rows[0]:
            ax.plot(steps, [r[key] for r in rows], label=key, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("per-sample loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def save_sample_grid(path: Path, y: torch.Tensor, real: torch.Tensor, sample: torch.Tensor, num_classes: int) -> None:
    """map | real | sample, one row per validation scene."""
    save_png(
        grid({"map": maps_to_uint8(y, num_classes), "real": images_to_uint8(real), "sample": images_to_uint8(sample)}),
        path,
    )
