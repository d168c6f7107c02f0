"""AdaRound iterations per block vs quality: block reconstruction error and LPIPS of the
regenerated images for W8 / W4 / W8A8 / W4A8, plus the wall time of calibration.

LPIPS is measured against the full-precision model's images from the same noise and the
same received maps (the cost of quantization alone) and against the dataset's photos (what
the paper's tables report). Decides the default ``--iters`` of ``qgesco quantize``.

    python bench/quant_iters.py --model camvid-demo                         # the full benchmark
    python bench/quant_iters.py --model tiny.safetensors --data synthetic:8:cityscapes \\
        --calib-data synthetic:8:cityscapes --maps 4 --steps 10 --every 5 --iters 0,2 \\
        --configs W8,W4A8 --samples 2 --sample-steps 5 --no-save            # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import RESULTS, markdown_table, save
from qgesco.channel import AWGN, encode, transmit
from qgesco.data import open_dataset
from qgesco.diffusion import create_diffusion, respace
from qgesco.metrics import lpips
from qgesco.metrics.perceptual import MIN_SIDE
from qgesco.models.checkpoint import load_model
from qgesco.quant import CalibrationSet, build_calibration_set, quantize

CONFIGS = {"W8": (8, None), "W4": (4, None), "W8A8": (8, 8), "W4A8": (4, 8)}


def sample(model, diffusion, y, noise, guidance: float) -> torch.Tensor:
    """Images in [0, 1] from fixed noise (same trajectories for every model)."""
    with torch.no_grad():
        x = diffusion.ddim_sample_loop(model, noise.shape, y, guidance=guidance, noise=noise, batch_cfg=True)
    return ((x + 1) / 2).clamp(0, 1)


def lpips_mean(images: torch.Tensor, reference: torch.Tensor) -> float | None:
    if min(images.shape[-2:]) < MIN_SIDE:
        return None  # LPIPS needs 32x32 or more
    return round(lpips(images, reference).mean().item(), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camvid-demo", help="model file or bundled model name")
    ap.add_argument("--data", default="camvid:val", help="maps and photos the images are regenerated from")
    ap.add_argument("--calib-data", default="camvid:train", help="dataset of the calibration set")
    ap.add_argument("--calib", help="reuse this calibration set instead of recording one")
    ap.add_argument("--maps", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--iters", default="250,1000,5000,20000", help="AdaRound iterations per block to compare")
    ap.add_argument("--configs", default="W8,W4,W8A8,W4A8", help=f"any of {','.join(CONFIGS)}")
    ap.add_argument("--samples", type=int, default=16, help="images regenerated per model")
    ap.add_argument("--sample-steps", type=int, default=25, help="DDIM steps of the regeneration")
    ap.add_argument("--psnr", type=float, default=100.0, help="channel PSNR of the regenerated maps")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="print the table only (smoke runs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        sys.exit(f"unknown config(s) {unknown}; choose from {','.join(CONFIGS)}")
    model = load_model(args.model)
    cfg = model.config

    started = time.perf_counter()
    if args.calib:
        calib = CalibrationSet.load(args.calib)
    else:
        calib = build_calibration_set(model, open_dataset(args.calib_data, image_hw=cfg.image_hw), num_maps=args.maps,
                                      steps=args.steps, every=args.every, batch_size=args.batch_size, seed=args.seed)
    calib_seconds = round(time.perf_counter() - started, 1)

    data = open_dataset(args.data, image_hw=cfg.image_hw)
    items = [data[i] for i in range(min(args.samples, len(data)))]
    g = torch.Generator().manual_seed(args.seed)
    instance = None if cfg.no_instance else torch.stack([s.instance for s in items])
    y = transmit(encode(torch.stack([s.label for s in items]), cfg.num_classes, instance), AWGN(args.psnr), cfg.num_classes, generator=g)
    noise = torch.randn((len(items), 3, *cfg.image_hw), generator=g)
    photos = (torch.stack([s.image for s in items]) + 1) / 2
    diffusion = respace(create_diffusion(learn_sigma=cfg.learn_sigma), f"ddim{args.sample_steps}")
    reference = sample(model, diffusion, y, noise, args.guidance)
    rows = [{"config": "fp32", "iters": "-", "lpips_vs_fp": 0.0, "lpips_vs_photo": lpips_mean(reference, photos)}]
    for name in configs:
        wbits, abits = CONFIGS[name]
        for iters in (int(i) for i in args.iters.split(",")):
            qmodel = quantize(model, calib, weight_bits=wbits, act_bits=abits, iters=iters, batch_size=args.batch_size, seed=args.seed)
            blocks = qmodel.quant_report["blocks"]
            images = sample(qmodel, diffusion, y, noise, args.guidance)
            rows.append({
                "config": name, "iters": iters, "quantize_s": qmodel.quant_report["seconds"],
                "mean_block_error": f"{sum(b['error'] for b in blocks) / len(blocks):.3g}" if blocks else "-",
                "output_block_error": f"{blocks[-1]['error']:.3g}" if blocks else "-",
                "learned_blocks": f"{qmodel.quant_report['blocks_with_learned_rounding']}/{len(blocks)}",
                "lpips_vs_fp": lpips_mean(images, reference), "lpips_vs_photo": lpips_mean(images, photos),
            })
            print(rows[-1], flush=True)
    columns = ["config", "iters", "quantize_s", "mean_block_error", "output_block_error", "learned_blocks", "lpips_vs_fp", "lpips_vs_photo"]
    table = markdown_table(rows, columns)
    table += (f"\nCalibration set: {len(calib)} samples from {calib.maps.shape[0]} maps, recorded in {calib_seconds} s "
              f"({'loaded from ' + args.calib if args.calib else 'recorded here'}). Images: {len(items)} maps of {args.data} "
              f"at {args.psnr:g} dB, DDIM {args.sample_steps}, guidance {args.guidance:g}.\n")
    if args.no_save:
        print(table)
        return
    save(f"quant_iters_{Path(str(args.model)).stem}", {"rows": rows, "calibration_seconds": calib_seconds, "args": vars(args)},
         table, "python bench/quant_iters.py " + " ".join(sys.argv[1:]))
    print(f"results in {RESULTS}")


if __name__ == "__main__":
    main()
