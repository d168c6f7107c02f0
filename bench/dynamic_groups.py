"""Which layers make per-call (dynamic) activation grids costly: the demo model's W8 file with one
group of layers at a time on int8 kernels, and with all but some groups, against the exact
weight-only model (the simulation).

    .venv/bin/python bench/dynamic_groups.py --threads 1

Inputs: the first 3 CamVid val scenes noised to t = 999, 600, 300, 100, 20 (q_sample, seeded),
each conditional and unconditional (zero map), one forward. Metric: relative L2 distance of the
eps prediction from weight-only's. Grid widths 7 (CPUs without VNNI) and 8 bits (VNNI; computed
here exactly as two 7-bit weight halves). The rows behind Int8Policy.dynamic_weight_only
(docs/runtime.md); results/dynamic_groups.{json,md}.
"""

from __future__ import annotations

import argparse
import sys

import torch
from common import markdown_table, save

from qgesco.channel import encode
from qgesco.data.datasets import CamVid
from qgesco.diffusion import create_diffusion
from qgesco.models.checkpoint import resolve_source
from qgesco.quant.swap import quant_layers
from qgesco.runtime import Int8Layer, load_runtime
from qgesco.runtime.policy import WEIGHT_ONLY_LAYERS

ROLES = ("time_embed", "emb_layers", "mlp_shared", "mlp_gamma", "mlp_beta", "in_layers", "out_layers")
ROLES += ("skip_connection", "qkv", "proj_out", "op", "conv")
POLICIES = {"all layers": (), "all but skip convs + output conv": ("skip_connection", "out.2")}


def role(name: str) -> str:
    """The layer's job in the UNet, from its module path (``out.2``: the output conv)."""
    parts = name.split(".")
    return next((r for r in ROLES if r in parts), name)


def inputs(cfg, maps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data = CamVid(split="val", image_hw=cfg.image_hw)
    items = [data[i] for i in range(maps)]
    y = encode(torch.stack([it.label for it in items]), cfg.num_classes)
    x0 = torch.stack([it.image for it in items])
    diffusion, g = create_diffusion(), torch.Generator().manual_seed(0)
    xs, ts, ys = [], [], []
    for step in (999, 600, 300, 100, 20):
        t = torch.full((maps,), step)
        x = diffusion.q_sample(x0, t, noise=torch.randn(x0.shape, generator=g))
        xs += [x, x]
        ts += [t, t]
        ys += [y, torch.zeros_like(y)]
    return torch.cat(xs), torch.cat(ts), torch.cat(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--maps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve_source("camvid-demo-w8")
    exact = load_runtime(path, backend="weight-only")
    x, t, y = inputs(exact.config, args.maps)
    with torch.no_grad():
        base = exact(x, t, y)[:, :3]

    def error() -> float:
        with torch.no_grad():
            return ((exact(x, t, y)[:, :3] - base).norm() / base.norm()).item()

    rows = {}
    for bits in (7, 8):
        integer = {n: Int8Layer(m, grid_bits=bits) for n, m in quant_layers(exact) if n not in WEIGHT_ONLY_LAYERS}
        exact_layers = {n: exact.get_submodule(n) for n in integer}
        groups: dict[str, list[str]] = {}
        for name in integer:
            groups.setdefault(role(name), []).append(name)

        def run(on_int8: list[str]) -> float:
            for name in on_int8:
                exact.set_submodule(name, integer[name])
            try:
                return error()
            finally:
                for name in on_int8:
                    exact.set_submodule(name, exact_layers[name])

        for label, kept in POLICIES.items():
            row = rows.setdefault(label, {"layers on int8": label, "count": 0})
            chosen = [n for n in integer if role(n) not in kept]
            row.update(count=len(chosen), **{f"u{bits}": f"{run(chosen):.4f}"})
        for group, members in groups.items():
            row = rows.setdefault(group, {"layers on int8": f"only {group}", "count": len(members)})
            row[f"u{bits}"] = f"{run(members):.4f}"
        print(f"u{bits} done", flush=True)
    table = markdown_table(list(rows.values()), ["layers on int8", "count", "u7", "u8"])
    save(
        "dynamic_groups",
        {"rows": list(rows.values()), "maps": args.maps, "threads": args.threads},
        table + "\nRelative L2 of the eps prediction vs the W8 weight-only model; bundled camvid-demo-w8.\n",
        "python bench/dynamic_groups.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
