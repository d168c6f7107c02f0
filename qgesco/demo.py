"""``qgesco demo``: the whole Q-GESCO story on the bundled models, offline, in about a minute.

Street-scene maps drawn by our synthetic generator (CamVid classes, fixed seeds) -> sender
(one-hot, class-presence compression) -> AWGN or Rayleigh channel at each PSNR -> receiver
cleanup -> the bundled demo model in fp32 and its W8 quantization, from the same received
maps and the same x_T -> one picture (``grid.png``) and one table (``table.md``,
``results.json``). Everything a user would call lives in the library; this module only
strings it together and measures.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .api import load_model
from .channel import CHANNELS, bandwidth, encode, make_channel, transmit
from .data import street_scene
from .diffusion import Sampler, create_diffusion, make_sampler
from .fileio import write_json, write_text
from .metrics import WeightsMissingError, lpips
from .models.checkpoint import bundled_path
from .receiver import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_WINDOW, DEFAULT_SAMPLER, regenerate, to_unit
from .viz import grid, images_to_uint8, labels_to_uint8, maps_to_uint8, save_png

DEMO_MODEL = "camvid-demo"
DEMO_QUANTIZED = "camvid-demo-w8"
#: Scene seeds of the bundled maps: two street layouts with road, cars, buildings, trees and sky.
SCENE_SEEDS = (1, 6)


@dataclass
class DemoResult:
    out: Path
    psnrs: list[float]
    sampler: str
    guidance_window: tuple[int, int] | None
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def table(self) -> str:
        s = self.summary
        lines = [
            "| | fp32 | W8 |",
            "|---|---|---|",
            f"| model file | {s['fp32_bytes'] / 1e6:.2f} MB | {s['w8_bytes'] / 1e6:.2f} MB "
            f"({s['w8_bytes'] / s['fp32_bytes']:.1%}) |",
            f"| sampling per image ({self.sampler}{self._window()}, {s['evaluations']} evaluations) "
            f"| {s['fp32_ms_per_image']:.0f} ms | {s['w8_ms_per_image']:.0f} ms ({s['w8_backend']} backend) |",
            "",
            "| PSNR (dB) | LPIPS W8 vs fp32 | channel uses / image | presence bits | label PNG bits |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows:
            lp = "n/a (run `qgesco fetch-weights`)" if r["lpips_w8_vs_fp32"] is None else f"{r['lpips_w8_vs_fp32']:.5f}"
            lines.append(
                f"| {r['psnr_db']:g} | {lp} | {r['channel_uses']:,.0f} | {r['presence_bits']} | "
                f"{r['label_png_bits']:,.0f} |"
            )
        return "\n".join(lines) + "\n"

    def _window(self) -> str:
        return "" if self.guidance_window is None else ", guided at t in [{}, {}]".format(*self.guidance_window)


def _writable(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e}); choose a writable folder") from None
    return out


def _timed(
    model, y, noise, sampler: Sampler, window, generator_seed: int, progress: bool
) -> tuple[torch.Tensor, float]:
    """Images and the wall time per image of sampling them all at once."""
    started = time.perf_counter()
    images = regenerate(
        model,
        y,
        sampler=sampler,
        guidance=DEFAULT_GUIDANCE,
        guidance_window=window,
        noise=noise,
        progress=progress,
        generator=torch.Generator().manual_seed(generator_seed),
    )
    return images, 1000 * (time.perf_counter() - started) / len(y)


def run_demo(
    out: str | os.PathLike = "demo_out",
    psnrs: list[float] = (100.0, 20.0, 10.0),
    channel: str = "awgn",
    sampler: str = DEFAULT_SAMPLER,
    seed: int = 0,
    progress: bool = True,
    guidance_window: tuple[int, int] | None = DEFAULT_GUIDANCE_WINDOW,
) -> DemoResult:
    """Run the demo and write ``grid.png``, ``table.md`` and ``results.json`` into ``out``."""
    if channel not in CHANNELS:
        raise ValueError(f"--channel {channel!r}: use one of {', '.join(CHANNELS)}")
    receiver_sampler = make_sampler(create_diffusion(), sampler)  # one sampler for both receivers
    evaluations = receiver_sampler.num_evaluations(DEFAULT_GUIDANCE, guidance_window)
    psnrs = [float(p) for p in psnrs]
    out = _writable(Path(out))
    fp32_path, w8_path = bundled_path(DEMO_MODEL), bundled_path(DEMO_QUANTIZED)
    fp32 = load_model(fp32_path)
    w8 = load_model(w8_path)  # the default backend: int8 compute on CPU (LPIPS vs fp32 in the table; docs/runtime.md)
    cfg = fp32.config
    h, w = cfg.image_hw
    scenes = [street_scene(s, h, w) for s in SCENE_SEEDS]
    labels = torch.stack([torch.from_numpy(s.label).long() for s in scenes])
    y = encode(labels, cfg.num_classes)
    g = torch.Generator().manual_seed(seed)
    per_row = torch.tensor([p for p in psnrs for _ in scenes], dtype=torch.float64)
    rows_y = y.repeat(len(psnrs), 1, 1, 1)
    received = transmit(rows_y, make_channel(channel, per_row), cfg.num_classes, generator=g)
    noise = torch.randn((len(rows_y), 3, h, w), generator=g)
    images_fp32, fp32_ms = _timed(fp32, received, noise, receiver_sampler, guidance_window, seed, progress)
    images_w8, w8_ms = _timed(w8, received, noise, receiver_sampler, guidance_window, seed, progress)
    try:
        distances = lpips(to_unit(images_w8), to_unit(images_fp32)).flatten().tolist()
    except WeightsMissingError:
        distances = None
    cost = bandwidth(labels, cfg.num_classes)
    result = DemoResult(out=out, psnrs=psnrs, sampler=sampler, guidance_window=guidance_window)
    for p, psnr in enumerate(psnrs):
        span = slice(p * len(scenes), (p + 1) * len(scenes))
        result.rows.append(
            {
                "psnr_db": psnr,
                "lpips_w8_vs_fp32": None if distances is None else statistics.fmean(distances[span]),
                "channel_uses": statistics.fmean(c.compressed_channel_uses for c in cost),
                "presence_bits": cost[0].presence_bits,
                "label_png_bits": statistics.fmean(c.label_png_bits for c in cost),
            }
        )
    result.summary = {
        "fp32_bytes": fp32_path.stat().st_size,
        "w8_bytes": w8_path.stat().st_size,
        "fp32_ms_per_image": fp32_ms,
        "w8_ms_per_image": w8_ms,
        "w8_backend": w8.runtime_backend[0],
        "evaluations": evaluations,
        "images": len(rows_y),
        "channel": channel,
        "seed": seed,
        "guidance": DEFAULT_GUIDANCE,
        "guidance_window": None if guidance_window is None else list(guidance_window),
        "threads": torch.get_num_threads(),
    }
    picture = grid(
        {
            "clean map": labels_to_uint8(labels.repeat(len(psnrs), 1, 1), cfg.num_classes),
            "received": maps_to_uint8(received, cfg.num_classes),
            "fp32": images_to_uint8(images_fp32),
            "W8": images_to_uint8(images_w8),
        },
        scale=3,
        row_titles=[f"{p:g} dB" for p in psnrs for _ in scenes],
    )
    save_png(picture, out / "grid.png")
    write_text(out / "table.md", result.table())
    write_json(out / "results.json", {"psnrs": psnrs, "sampler": sampler, "rows": result.rows, **result.summary})
    return result
