"""Train the bundled CamVid segmentation network (``qgesco.metrics.segnet``) on CPU and measure it.

CamVid train at 48x64 with the data module's train augmentation (12.5 % larger resize, random
crop, mirror) plus photometric jitter, so that the colour shifts of regenerated images do not
read as other classes. AdamW, cross-entropy weighted by (median frequency / class frequency)^p
so that poles, signs and people count, one warm-up then cosine learning-rate schedule, fixed
length (no checkpoint is picked by its val score). Writes the weights (float16, with the recipe
and the CamVid val scores of exactly these weights in the metadata) and
``bench/results/segnet_camvid.json/.md``. Seeded: the same command on the same torch build
gives the same weights.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import markdown_table, save
from tqdm import tqdm

from qgesco.data import make_loader, open_dataset
from qgesco.fileio import save_tensors
from qgesco.metrics import ConfusionMatrix
from qgesco.metrics.segnet import TRAIN_HW, WEIGHTS, SegNet


def class_weights(ds, num_classes: int, power: float) -> torch.Tensor:
    """(median frequency / frequency)^power over the un-augmented labels, normalised so that
    the average weight per pixel is 1 (the loss keeps its scale whatever ``power`` is)."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for i in range(len(ds)):
        counts += np.bincount(ds[i].label.numpy().ravel(), minlength=num_classes)
    freq = counts / counts.sum()
    w = (np.median(freq) / freq) ** power
    return torch.tensor(w / (w * freq).sum(), dtype=torch.float32)


def jitter(images: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Per-image random brightness, contrast and saturation, each scaled by 1 ± ``strength``."""
    n = images.shape[0]
    b, c, s = (1 + strength * (2 * torch.rand(3, n, 1, 1, 1, generator=g) - 1)).unbind(0)
    gray = images.mean(dim=1, keepdim=True)
    images = gray + (images - gray) * s
    images = (images - images.mean(dim=(1, 2, 3), keepdim=True)) * c + images.mean(dim=(1, 2, 3), keepdim=True)
    return (images * b).clamp(0, 1)


def evaluate(model: SegNet, ds) -> dict:
    """CamVid val scores: all 12 classes (how the metric is used) and the usual 11 without Unlabelled."""
    model.eval()
    cm12, cm11 = ConfusionMatrix(12), ConfusionMatrix(12, ignore_index=11)
    for batch in make_loader(ds, batch_size=32, shuffle=False):
        pred = model.segment((batch.image + 1) / 2)
        cm12.update(pred, batch.label)
        cm11.update(pred, batch.label)
    iou = cm12.iou()
    return {
        "miou": cm12.miou(),
        "pixel_accuracy": cm12.pixel_accuracy(),
        "miou_11": float(np.nanmean(cm11.iou()[:11])),
        "pixel_accuracy_11": cm11.pixel_accuracy(),
        "iou": {name: float(v) for name, v in zip(ds.class_names, iou)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--warmup", type=float, default=0.03, help="share of steps with a linear warm-up")
    ap.add_argument(
        "--class-weight-power", type=float, default=0.5, help="0 = plain cross-entropy, 1 = median-frequency balancing"
    )
    ap.add_argument("--jitter", type=float, default=0.2)
    ap.add_argument("--widths", default="24,48,96,160", help="channels per UNet level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: leave the other core to other jobs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train = open_dataset("camvid:train", image_hw=TRAIN_HW, train=True, seed=args.seed)
    val = open_dataset("camvid:val", image_hw=TRAIN_HW, train=False)
    names = list(train.class_names)
    weight = class_weights(
        open_dataset("camvid:train", image_hw=TRAIN_HW, train=False), len(names), args.class_weight_power
    )
    model = SegNet(len(names), tuple(int(w) for w in args.widths.split(",")))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * math.ceil(len(train) / args.batch_size)
    warm = max(1, round(args.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
    )
    g = torch.Generator().manual_seed(args.seed)

    curve = []
    t0 = time.perf_counter()
    bar = tqdm(range(args.epochs), desc="segnet", unit="epoch")
    for epoch in bar:
        model.train()
        total, seen = 0.0, 0
        for batch in make_loader(train, args.batch_size, epoch=epoch, shuffle=True):
            logits = model(jitter((batch.image + 1) / 2, args.jitter, g))
            loss = F.cross_entropy(logits, batch.label, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch.name)
            seen += len(batch.name)
        point = {"epoch": epoch + 1, "train_loss": round(total / seen, 4)}
        if (epoch + 1) % 10 == 0 or epoch + 1 == args.epochs:
            point["val_miou"] = round(evaluate(model, val)["miou"], 4)
        curve.append(point)
        bar.set_postfix({k: v for k, v in point.items() if k != "epoch"})
    train_s = time.perf_counter() - t0

    # Score exactly what ships: the float16-rounded weights, loaded back into a float32 model.
    shipped = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(shipped)
    scores = evaluate(model, val)
    command = "python bench/train_segnet.py " + " ".join(sys.argv[1:])
    recipe = {
        "data": f"CamVid train (367) at {TRAIN_HW[0]}x{TRAIN_HW[1]}, resize +12.5 %, random crop, mirror, "
        f"brightness/contrast/saturation x(1±{args.jitter})",
        "loss": f"cross-entropy, class weights (median freq / freq)^{args.class_weight_power}",
        "optimizer": f"AdamW lr {args.lr} wd {args.weight_decay}, {args.warmup:.0%} warm-up then cosine",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "train_wall_s": round(train_s),
        "threads": args.threads,
        "torch": torch.__version__,
        "command": command,
    }
    val_scores = {"split": f"CamVid val (101) at {TRAIN_HW[0]}x{TRAIN_HW[1]}", **scores}
    save_tensors(
        WEIGHTS,
        shipped,
        {
            "kind": "segnet",
            "config": model.config(),
            "classes": names,
            "train_hw": list(TRAIN_HW),
            "recipe": recipe,
            "val": val_scores,
            "class_weights": [round(float(w), 4) for w in weight],
        },
    )

    rows = [{"class": n, "%": f"{100 * v:.1f}"} for n, v in scores["iou"].items()]
    rows += [
        {"class": "**mIoU (12 classes)**", "%": f"**{100 * scores['miou']:.1f}**"},
        {"class": "pixel accuracy (12)", "%": f"{100 * scores['pixel_accuracy']:.1f}"},
        {"class": "mIoU (11, Unlabelled ignored)", "%": f"{100 * scores['miou_11']:.1f}"},
        {"class": "pixel accuracy (11)", "%": f"{100 * scores['pixel_accuracy_11']:.1f}"},
    ]
    params = sum(p.numel() for p in model.parameters())
    table = (
        f"SegNet {model.config()['widths']} ({params / 1e6:.2f} M parameters, {WEIGHTS.stat().st_size / 1e6:.2f} MB), "
        f"CamVid val at {TRAIN_HW[0]}x{TRAIN_HW[1]}, trained {args.epochs} epochs in {train_s / 60:.1f} min\n\n"
        + markdown_table(rows, ["class", "%"])
    )
    save(
        "segnet_camvid",
        {
            "val": val_scores,
            "recipe": recipe,
            "config": model.config(),
            "parameters": params,
            "weights_bytes": WEIGHTS.stat().st_size,
            "curve": curve,
        },
        table,
        command,
    )


if __name__ == "__main__":
    main()
