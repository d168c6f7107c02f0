"""``qgesco train``: noise-aware training from a YAML config; every field also a flag."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from ..train.config import FIELDS

    p = sub.add_parser(
        "train",
        help="train a GESCO model (noise-aware, EMA, guidance dropout); works under torchrun",
        description="Train from --config (YAML) with any field overridden by its flag, e.g. "
        "`qgesco train --config configs/camvid-demo.yaml --steps 200 --lr 2e-4`. "
        "Many processes: `torchrun --nproc_per_node 4 -m qgesco.cli train --config ...`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", help="YAML file of training fields (see configs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    fields = p.add_argument_group("training fields (override the config file)")
    for name in FIELDS:
        fields.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"field_{name}",
            metavar="VALUE",
            help=f"default: {FIELDS[name].default!r}",
        )
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import validate
    from ..train import load_config, train
    from ..train.config import parse_override

    overrides = {
        k[len("field_") :]: parse_override(k[len("field_") :], v)
        for k, v in vars(args).items()
        if k.startswith("field_") and v is not None
    }
    cfg = load_config(args.config, overrides)
    validate.output_dir("--out", cfg.out)
    summary = train(cfg, resume=args.resume)
    print(f"trained to step {summary['step']}; EMA model: {cfg.out}/ema.safetensors")
    return 0
