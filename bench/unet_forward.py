"""Milliseconds per UNet forward on CPU: batch 1 and 8, contiguous vs channels_last,
eager vs ``torch.compile``. Decides the default inference layout (``qgesco.models.inference``)."""

from __future__ import annotations

import argparse
import sys

import torch
from common import markdown_table, median_ms, save

from qgesco.models.checkpoint import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="camvid-demo")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model(args.preset, seed=0).eval()
    cfg = model.config
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, *cfg.image_hw, generator=g)
        y = torch.rand(batch, cfg.label_channels, *cfg.image_hw, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        for layout in ("contiguous", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            m = create_model(args.preset, seed=0).eval().to(memory_format=fmt)
            xs, ys = x.to(memory_format=fmt), y.to(memory_format=fmt)
            modes = [("eager", m)] + ([] if args.no_compile else [("compile", torch.compile(m, dynamic=False))])
            for mode, fn in modes:
                try:
                    with torch.no_grad():
                        ms = median_ms(lambda: fn(xs, t, ys), warmup=3 if mode == "compile" else 2)
                except Exception as e:  # compile needs a working C++ toolchain; report, don't die
                    print(
                        f"{mode} {layout} batch {batch}: failed ({type(e).__name__}: {str(e)[:120]})", file=sys.stderr
                    )
                    continue
                rows.append(
                    {
                        "preset": args.preset,
                        "batch": batch,
                        "layout": layout,
                        "mode": mode,
                        "ms_per_forward": round(ms, 1),
                        "ms_per_image": round(ms / batch, 1),
                    }
                )
    table = markdown_table(rows, ["preset", "batch", "layout", "mode", "ms_per_forward", "ms_per_image"])
    save(
        f"unet_forward_{args.preset}",
        {"rows": rows, "image_hw": list(cfg.image_hw)},
        table,
        "python bench/unet_forward.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
