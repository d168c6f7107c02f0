"""``qgesco sample``: the receiver on its own: received maps (from ``qgesco transmit``) -> images."""

from __future__ import annotations

import argparse

from qgesco.runtime.load import BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="regenerate images from received maps (the output of `qgesco transmit --out`)",
        description="Run the receiver: a fp32 model (our .safetensors or a bundled name) or a quantized one "
        "(from `qgesco quantize`) regenerates one PNG per received map.",
    )
    p.add_argument("received", metavar="received.safetensors", help="written by `qgesco transmit --out`")
    p.add_argument("--model", default="camvid-demo", help="model file or bundled name (default camvid-demo)")
    p.add_argument(
        "--sampler", default=None, help="sampler family or spec (default: the receiver's, see docs/samplers.md)"
    )
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the receiver's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale s (default 2)")
    p.add_argument(
        "--guidance-window",
        metavar="T_LO,T_HI",
        help="guide only these model timesteps, or 'all' (default: the receiver's, see docs/samplers.md)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=(*BACKENDS, "bf16"),
        help="auto: fp32 for a float file, the faster kernels for a quantized one; bf16: a float file in bfloat16 "
        "(opt-in: it changes what the file computes; CPUs with native bf16); int8 / weight-only: a quantized "
        "file's backend (docs/runtime.md)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="sample.png", help="PNG path; several maps get _0, _1, ... suffixes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from PIL import Image

    from qgesco import validate
    from qgesco.api import load_model
    from qgesco.channel import load_received
    from qgesco.diffusion import sampler_spec
    from qgesco.fileio import atomic_path
    from qgesco.receiver import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, receiver_window, regenerate
    from qgesco.runtime import backend_line
    from qgesco.viz import images_to_uint8

    spec = sampler_spec(args.sampler, args.steps, DEFAULT_SAMPLER)
    if args.guidance is not None:
        validate.guidance("--guidance", args.guidance)
    validate.seed("--seed", args.seed)
    validate.output_file(
        "--out", args.out, (".png",), inputs={"received.safetensors": args.received, "--model": args.model}
    )
    y, _, _ = load_received(args.received)
    model = load_model(args.model, backend=args.backend)
    validate.finite_weights(f"model {args.model}", model)
    validate.image_size(f"{args.received}: the map size", *y.shape[2:], model.config.downsample_factor)
    line = backend_line(args.model) if args.backend == "auto" else f"{args.model}: backend {args.backend} (--backend)"
    if line:
        print(line)
    if y.shape[1] != model.config.label_channels:
        raise ValueError(
            f"{args.received}: the map has {y.shape[1]} channels but the model takes {model.config.label_channels}; "
            f"transmit with --num-classes {model.config.num_classes}"
            + ("" if model.config.no_instance else " and --instance")
        )
    images = regenerate(
        model,
        y,
        sampler=spec,
        guidance=DEFAULT_GUIDANCE if args.guidance is None else args.guidance,
        guidance_window=receiver_window(args.guidance_window),
        generator=torch.Generator().manual_seed(args.seed),
        progress=True,
    )
    out = Path(args.out)
    paths = [out] if len(images) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(images))]
    for path, pixels in zip(paths, images_to_uint8(images)):
        with atomic_path(path) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        print(f"wrote {path}")
    return 0
