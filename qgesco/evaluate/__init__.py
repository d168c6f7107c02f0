"""Evaluation of receivers over channel quality: the paper's Tables I and II.

    from qgesco.evaluate import EvalSettings, evaluate
    settings = EvalSettings("camvid:val", psnrs=(100, 20, 10), guidance=2)  # the paper's sampler, ddpm1000
    result = evaluate({"fp32": "camvid-demo", "W8": "w8.safetensors"}, settings, "runs/eval")

Every model regenerates the same received maps from the same x_T (seeded per image), images
land on disk (resumable), and LPIPS, FID/KID, mIoU and PSNR/SSIM are computed from them;
``metrics.json``, ``table.md``, a metrics-vs-PSNR plot and a sample grid are written. Under
``torchrun`` the images are shared across ranks. See docs/evaluation.md.
"""

from .models import EvalModel, describe, load_eval_model
from .report import render, table_i, table_ii
from .runner import (
    METRICS,
    EvalJob,
    chunks,
    evaluate,
    image_path,
    prepare,
    regenerate_images,
    score,
    shard,
    write_report,
)
from .settings import EvalSettings

__all__ = [
    "METRICS",
    "EvalJob",
    "EvalModel",
    "EvalSettings",
    "chunks",
    "describe",
    "evaluate",
    "image_path",
    "load_eval_model",
    "prepare",
    "regenerate_images",
    "render",
    "score",
    "shard",
    "table_i",
    "table_ii",
    "write_report",
]
