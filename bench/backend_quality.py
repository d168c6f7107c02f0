"""What integer compute costs in image quality: the demo model's W8 file regenerating CamVid val
scenes on each runtime backend, from the same received maps and x_T as fp32.

    .venv/bin/python bench/backend_quality.py --images 32 --threads 1

LPIPS of each receiver's images against fp32's and of the int8 (dynamic activation grids)
images against the exact weight-only ones, plus wall time per image; results/backend_quality.{json,md}.
Where the CPU has native bf16 the fp32 file on the bf16 backend is a row too (the peer to beat), the
int8 rows compute their weight-only layers in bf16 (the default there) and one more row keeps them
fp32. Dynamic grids are run at both widths: 7 bits (what CPUs without VNNI compute) and 8 bits (what
VNNI CPUs compute; on a CPU without VNNI emulated exactly by two 7-bit weight halves, so its time
there is not VNNI's). ``--record`` writes the LPIPS vs fp32 per grid width into the W8 file's
metadata (qgesco.quant.checkpoint.record_dynamic_lpips), where the runtime's default policy reads it:
``auto`` then keeps a W8 file weight-only where its grid misses the policy's bar (docs/runtime.md).
``--pt2e`` adds the fp32 file through PyTorch's own int8 recipe and compiler (bench/receiver.py's
``Pt2eModel``, calibrated on 4 CamVid train maps; needs torchao), timed on a second run after the one that
compiles it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import markdown_table, save

from qgesco.api import load_model
from qgesco.channel import encode
from qgesco.data.datasets import CamVid
from qgesco.diffusion import create_diffusion, make_sampler
from qgesco.metrics import lpips
from qgesco.models.checkpoint import BUNDLED, resolve_source
from qgesco.quant.checkpoint import record_dynamic_lpips
from qgesco.receiver import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_WINDOW, DEFAULT_SAMPLER, regenerate, to_unit
from qgesco.runtime import Int8Policy, load_runtime, to_int8
from qgesco.runtime.bf16 import bf16_native

PT2E_ROW = "fp32 file, PT2E x86 int8 (torchao) + inductor"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="first N CamVid val scenes (default 8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--w8", default="camvid-demo-w8", help="the W8 file of the demo model (default: the bundled one)")
    ap.add_argument("--record", action="store_true", help="record the measured LPIPS per grid width in --w8")
    ap.add_argument("--pt2e", action="store_true", help="add PT2E x86 int8 + inductor (pip install torchao)")
    args = ap.parse_args()
    if args.pt2e:
        from receiver import installed_version

        if installed_version("torchao") is None:
            ap.error("--pt2e needs torchao (pip install torchao), which qgesco does not depend on")
    if args.record and args.w8 in BUNDLED:
        ap.error("--record rewrites --w8's metadata: give a copy of the file, not the bundled name")
    torch.set_num_threads(args.threads)
    fp32 = load_model("camvid-demo")
    cfg = fp32.config
    data = CamVid(split="val", image_hw=cfg.image_hw)
    labels = torch.stack([data[i].label for i in range(min(args.images, len(data)))])
    y = encode(labels, cfg.num_classes)
    noise = torch.randn((len(y), 3, *cfg.image_hw), generator=torch.Generator().manual_seed(0))
    sampler = make_sampler(create_diffusion(), DEFAULT_SAMPLER)
    w8 = resolve_source(args.w8)
    receivers = {"fp32": fp32, "W8 weight-only": load_runtime(w8, backend="weight-only")}
    for bits in (7, 8):
        receivers[f"W8 int8 (dynamic u{bits})"] = to_int8(
            load_runtime(w8, backend="weight-only"), Int8Policy(grid_bits=bits, min_intensity=0)
        )
    if bf16_native():  # the peer a user tries first where the CPU has bf16; elsewhere the backend is refused
        receivers["W8 int8 (dynamic u8), weight-only layers fp32"] = to_int8(
            load_runtime(w8, backend="weight-only"), Int8Policy(grid_bits=8, min_intensity=0, weight_only_bf16=False)
        )
        receivers["fp32 file, bf16 backend"] = load_model("camvid-demo", backend="bf16")
    if args.pt2e:
        from receiver import Pt2eModel

        train = CamVid(split="train", image_hw=cfg.image_hw)
        calib = encode(torch.stack([train[i].label for i in range(4)]), cfg.num_classes)
        receivers[PT2E_ROW] = Pt2eModel(load_model("camvid-demo"), calib)

    def run(model) -> torch.Tensor:
        return regenerate(
            model,
            y,
            sampler=sampler,
            guidance=DEFAULT_GUIDANCE,
            guidance_window=DEFAULT_GUIDANCE_WINDOW,
            noise=noise,
            progress=False,
            generator=torch.Generator().manual_seed(1),
        )

    images, ms = {}, {}
    for name, model in receivers.items():
        if name == PT2E_ROW:
            run(model)  # compiles it for the sampler's batch sizes
        start = time.perf_counter()
        images[name] = to_unit(run(model))
        ms[name] = 1000 * (time.perf_counter() - start) / len(y)
    rows = []
    for name in receivers:
        row = {"receiver": name, "ms per image": f"{ms[name]:.0f}"}
        if name != "fp32":
            row["LPIPS vs fp32"] = f"{statistics.fmean(lpips(images[name], images['fp32']).flatten().tolist()):.4f}"
        if name.startswith("W8 int8"):
            row["LPIPS vs weight-only"] = (
                f"{statistics.fmean(lpips(images[name], images['W8 weight-only']).flatten().tolist()):.4f}"
            )
        rows.append(row)
    table = markdown_table(rows, ["receiver", "ms per image", "LPIPS vs fp32", "LPIPS vs weight-only"])
    if args.record:
        by_name = {row["receiver"]: row for row in rows}
        record_dynamic_lpips(
            w8, {bits: float(by_name[f"W8 int8 (dynamic u{bits})"]["LPIPS vs fp32"]) for bits in (7, 8)}
        )
    save(
        "backend_quality",
        {"rows": rows, "images": len(y), "sampler": DEFAULT_SAMPLER, "threads": args.threads},
        table + f"\nCamVid val, first {len(y)} scenes, clean maps, {DEFAULT_SAMPLER}, guidance {DEFAULT_GUIDANCE}.\n",
        "python bench/backend_quality.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
