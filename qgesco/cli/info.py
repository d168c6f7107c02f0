"""``qgesco info``: size and compute of a model preset or file, analytically."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "info",
        help="parameters, fp32 size and FLOPs of a preset or model file (no weights loaded)",
        description="Print parameters, fp32 MB and FLOPs per forward / per guided step, computed on the meta device.",
    )
    p.add_argument(
        "model", help="preset name (e.g. gesco-cityscapes-256, camvid-demo) or one of our .safetensors model files"
    )
    p.add_argument("--height", type=int, help="image height (default: the model's training size)")
    p.add_argument("--width", type=int, help="image width (default: the model's training size)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import validate
    from ..fileio import read_meta
    from ..models.checkpoint import BUNDLED, bundled_path, file_config
    from ..models.costs import model_costs
    from ..models.presets import PRESETS, get_preset
    from ..quant.swap import PLAN_KEYS
    from ..runtime.costs import stored_bytes

    for flag in ("height", "width"):
        if getattr(args, flag) is not None:
            validate.finite_number(f"--{flag}", getattr(args, flag), low=1, integer=True)
    plan = meta = None
    if args.model in PRESETS and not Path(args.model).is_file():
        cfg = get_preset(args.model)
    else:
        path = bundled_path(args.model) if args.model in BUNDLED else Path(args.model)
        meta = read_meta(path)
        if meta.get("kind") not in ("unet", "quantized-unet"):
            raise ValueError(
                f"{path}: holds a {meta.get('kind', 'unknown')!r} file, not a model; give a model file or preset"
            )
        cfg = file_config(path, meta)
        if meta["kind"] == "quantized-unet":
            plan = {k: meta.get(k) for k in PLAN_KEYS}
    h, w = args.height or cfg.image_hw[0], args.width or cfg.image_hw[1]
    validate.image_size("--height/--width", h, w, cfg.downsample_factor)
    c = model_costs(cfg, h, w)
    print(f"model            {args.model}")
    print(f"resolution       {c.height}x{c.width}")
    print(f"parameters       {c.params:,}")
    print(f"fp32 size        {c.fp32_bytes / 1e6:,.1f} MB")
    if meta is not None:
        stored = stored_bytes(cfg, plan)
        bits = f"W{plan['weight_bits']}" + (f"A{plan['act_bits']}" if plan["act_bits"] else "") if plan else "fp32"
        print(f"stored size      {stored / 1e6:,.2f} MB ({bits}, {stored / c.fp32_bytes:.1%} of fp32; tensor bytes)")
    print(f"FLOPs / forward  {c.flops_forward / 1e12:.2f} TFLOP ({c.flops_forward / 1e9:,.1f} GFLOP)")
    print(f"FLOPs / guided   {c.flops_guided_step / 1e12:.2f} TFLOP (conditional + unconditional pass)")
    return 0
