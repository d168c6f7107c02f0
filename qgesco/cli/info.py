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
    from .. import validate
    from ..models.checkpoint import open_source
    from ..models.costs import model_costs
    from ..quant.swap import PLAN_KEYS
    from ..runtime.costs import stored_bytes

    for flag in ("height", "width"):
        if getattr(args, flag) is not None:
            validate.finite_number(f"--{flag}", getattr(args, flag), low=1, integer=True)
    source = open_source(args.model)
    cfg = source.config
    plan = {k: source.meta.get(k) for k in PLAN_KEYS} if source.quantized else None
    h, w = args.height or cfg.image_hw[0], args.width or cfg.image_hw[1]
    validate.image_size("--height/--width", h, w, cfg.downsample_factor)
    c = model_costs(cfg, h, w)
    print(f"model            {args.model}")
    print(f"resolution       {c.height}x{c.width}")
    print(f"parameters       {c.params:,}")
    fp32_bytes = stored_bytes(cfg)
    print(f"fp32 size        {fp32_bytes / 1e6:,.1f} MB")
    if source.path is not None:
        stored = stored_bytes(cfg, plan)
        bits = f"W{plan['weight_bits']}" + (f"A{plan['act_bits']}" if plan["act_bits"] else "") if plan else "fp32"
        print(f"stored size      {stored / 1e6:,.2f} MB ({bits}, {stored / fp32_bytes:.1%} of fp32; tensor bytes)")
    print(f"FLOPs / forward  {c.flops_forward / 1e12:.2f} TFLOP ({c.flops_forward / 1e9:,.1f} GFLOP)")
    print(f"FLOPs / guided   {c.flops_guided_step / 1e12:.2f} TFLOP (conditional + unconditional pass)")
    return 0
