"""``qgesco transmit``: send one label map over a noisy channel and write what the receiver gets."""

from __future__ import annotations

import argparse

#: Label PNGs hold 8- or 16-bit class ids.
MAX_CLASSES = 2**16


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "transmit",
        help="send a label map over a noisy channel; write the received map",
        description="Encode LABEL.png as the model's one-hot map, send it over a noisy channel and save the "
        "received map (safetensors, key 'y' in the model's layout, 'labels' the clean class map).",
    )
    p.add_argument("label", metavar="LABEL.png", help="8/16-bit PNG of class indices")
    p.add_argument("--instance", metavar="INST.png", help="PNG of instance ids; adds the instance-edge channel")
    p.add_argument(
        "--num-classes",
        type=int,
        default=35,
        help=f"C, the model's class count, 1..{MAX_CLASSES} (35 Cityscapes, 12 CamVid; default 35)",
    )
    p.add_argument(
        "--ignore",
        metavar="VALUE[:CLASS]",
        action="append",
        default=[],
        help="map a label value outside 0..C-1 to CLASS, or to no class when CLASS is left out (repeatable)",
    )
    p.add_argument("--psnr", type=float, required=True, help="channel PSNR in dB (peak 1)")
    p.add_argument("--channel", choices=("awgn", "rayleigh"), default="awgn")
    p.add_argument("--block", type=int, help="rayleigh only: symbols per fading block (default: one fade per image)")
    p.add_argument(
        "--noise-table",
        choices=("exact", "gesco"),
        default="exact",
        help="exact: sigma = 10^(-PSNR/20); gesco: the published code's sigma per level",
    )
    p.add_argument(
        "--filter",
        choices=("avgmax", "median", "none"),
        default="avgmax",
        help="receiver cleanup (default avgmax, as published)",
    )
    p.add_argument(
        "--no-compress",
        action="store_true",
        help="send all C planes instead of the present classes' planes + a C-bit mask",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="received.safetensors")
    p.add_argument("--preview", metavar="received.png", help="clean map and argmax of the received map side by side")
    p.add_argument("--stats", action="store_true", help="print channel uses and the bits of the digital alternatives")
    p.add_argument("--image", metavar="RGB.png", help="the map's photo, for the JPEG figure of --stats")
    p.add_argument("--jpeg-quality", type=int, help="JPEG quality of --stats' photo figure, 1..100 (default 75)")
    p.set_defaults(func=run)


def _read_ids(path: str, what: str):
    """An (H, W) int64 array of the ids in a single-channel PNG."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file ({what})")
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise ValueError(
                    f"{path}: {what} must be a single-channel PNG of integer ids, got mode {im.mode}; "
                    "convert colour-coded labels to indices first"
                )
            ids = np.asarray(im).astype(np.int64)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"{path}: {what} cannot be read as an image ({e}); give a single-channel PNG of class ids"
        ) from None
    if ids.ndim != 2 or ids.size == 0:
        raise ValueError(f"{path}: {what} is empty or not a 2-D image; give a single-channel PNG of class ids")
    return ids


def _parse_ignore(items: list[str]) -> dict[int, int | None]:
    ignore = {}
    for item in items:
        value, _, cls = item.partition(":")
        try:
            ignore[int(value)] = int(cls) if cls else None
        except ValueError:
            raise ValueError(
                f"--ignore {item!r}: expected VALUE or VALUE:CLASS with integers, e.g. 255 or 255:0"
            ) from None
    return ignore


def _check_args(args: argparse.Namespace) -> None:
    """Refuse flag combinations and values that cannot work, before any file is read."""
    from pathlib import Path

    from qgesco import validate

    if not (args.out or args.preview or args.stats):
        raise ValueError("nothing to do: give --out, --preview and/or --stats")
    if args.block is not None and args.channel != "rayleigh":
        raise ValueError("--block sets the fading block of --channel rayleigh; it has no meaning for awgn")
    unused = [flag for flag, value in (("--image", args.image), ("--jpeg-quality", args.jpeg_quality)) if value]
    if unused and not args.stats:
        raise ValueError(f"{' and '.join(unused)} only feed the JPEG figure of --stats: add --stats or leave them out")
    validate.finite_number("--psnr", args.psnr)
    validate.finite_number("--num-classes", args.num_classes, low=1, high=MAX_CLASSES, integer=True)
    validate.finite_number("--jpeg-quality", _quality(args), low=1, high=100, integer=True)
    validate.seed("--seed", args.seed)
    if args.block is not None:
        validate.finite_number("--block", args.block, low=1, integer=True)
    inputs = {"LABEL.png": args.label, "--instance": args.instance, "--image": args.image}
    if args.out:
        validate.output_file("--out", args.out, (".safetensors",), inputs=inputs)
    if args.preview:
        validate.output_file("--preview", args.preview, (".png",), inputs={**inputs, "--out": args.out})
    if args.image and not Path(args.image).is_file():
        raise FileNotFoundError(f"--image {args.image}: no such file")


def _quality(args: argparse.Namespace) -> int:
    return 75 if args.jpeg_quality is None else args.jpeg_quality


def _read_photo(path: str, labels):
    """The (1, 3, H, W) uint8 photo of ``--image``, at the label map's size."""
    import numpy as np
    import torch
    from PIL import Image

    try:
        with Image.open(path) as im:
            photo = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None]
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"--image {path}: cannot be read as an image ({e}); give an RGB PNG or JPEG") from None
    if photo.shape[2:] != labels.shape[1:]:
        raise ValueError(
            f"--image {path}: is {photo.shape[2]}x{photo.shape[3]} but the map {labels.shape[1]}x"
            f"{labels.shape[2]}; the per-pixel figures compare equal pixels: give the photo at the map's size"
        )
    return photo


def _read_maps(args: argparse.Namespace):
    """``(labels, instance or None)`` as (1, H, W) int64 tensors, checked against each other."""
    import torch

    from qgesco import validate

    labels = torch.from_numpy(_read_ids(args.label, "the label map"))[None]
    instance = torch.from_numpy(_read_ids(args.instance, "the instance map"))[None] if args.instance else None
    validate.map_bytes(
        f"--num-classes {args.num_classes}", args.num_classes + (instance is not None), *labels.shape[1:]
    )
    if instance is not None and instance.shape != labels.shape:
        raise ValueError(
            f"--instance {args.instance}: is {instance.shape[1]}x{instance.shape[2]} but the label map "
            f"{labels.shape[1]}x{labels.shape[2]}; give the instance map of this label map"
        )
    return labels, instance


def _print_stats(b) -> None:
    """The channel uses of the map and the bits of its digital alternatives, in total and per pixel."""
    pixels = b.height * b.width
    rows = [
        ("full one-hot", f"{b.full_channel_uses:,} real channel uses", b.full_channel_uses / pixels),
        (
            "presence-compressed",
            f"{b.compressed_channel_uses:,} real channel uses + {b.presence_bits} bits",
            b.compressed_channel_uses / pixels,
        ),
        ("label map as PNG", f"{b.label_png_bits:,} bits", b.label_png_bits / pixels),
    ]
    if b.instance_png_bits is not None:
        rows.append(("instance map as PNG", f"{b.instance_png_bits:,} bits", b.instance_png_bits / pixels))
    if b.jpeg_bits is not None:
        rows.append((f"photo as JPEG q={b.jpeg_quality}", f"{b.jpeg_bits:,} bits", b.jpeg_bits / pixels))
    print(
        f"map {b.height}x{b.width}, {b.classes_present} of {b.num_classes} classes present"
        f"{', with instance-edge plane' if b.edge_plane else ''}"
    )
    for name, amount, per_pixel in rows:
        print(f"  {name:<22} {amount:<44} {per_pixel:8.3f} per pixel")


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from qgesco import channel as ch
    from qgesco.fileio import atomic_path

    _check_args(args)
    link = ch.make_channel(args.channel, args.psnr, table=args.noise_table, block=args.block)
    C = args.num_classes
    ignore = _parse_ignore(args.ignore)
    labels, instance = _read_maps(args)
    photo = _read_photo(args.image, labels) if args.image else None
    y = ch.encode(labels, C, instance, ignore=ignore)
    generator = torch.Generator().manual_seed(args.seed)
    received = ch.transmit(y, link, C, cleanup=args.filter, compress=not args.no_compress, generator=generator)
    classes = ch.class_indices(labels, C, ignore)
    present = ch.compress(y, C).presence[0].nonzero().flatten().tolist()
    agreement = (received[0, :C].argmax(0) == classes[0])[classes[0] >= 0].float().mean().item()
    print(
        f"{link}: sigma {float(link.sigma):.4g}, {len(present)}/{C} classes present, "
        f"argmax of the received map agrees with the label on {100 * agreement:.2f}% of pixels"
    )
    if args.out:
        info = {
            "source": str(args.label),
            "instance": args.instance,
            "num_classes": C,
            "label_channels": y.shape[1],
            "channel": args.channel,
            "psnr_db": args.psnr,
            "noise_table": args.noise_table,
            "sigma": float(link.sigma),
            "block": args.block,
            "cleanup": args.filter,
            "compress": not args.no_compress,
            "seed": args.seed,
            "classes_present": present,
            "ignore": {str(k): v for k, v in ignore.items()},
        }
        ch.save_received(args.out, received, classes, info)
        print(f"wrote {args.out}: y {tuple(received.shape)}, labels {tuple(classes.shape)}")
    if args.preview:
        side_by_side = torch.cat([ch.colorize(classes[0], C), ch.colorize(received[0, :C].argmax(0), C)], dim=1)
        with atomic_path(args.preview) as tmp:
            Image.fromarray(side_by_side.numpy()).save(tmp, format="PNG")
        print(f"wrote {args.preview}: clean map | received argmax")
    if args.stats:
        _print_stats(ch.bandwidth(labels, C, instance, photo, jpeg_quality=_quality(args), ignore=ignore)[0])
    return 0
