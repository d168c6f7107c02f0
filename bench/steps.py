"""Quality vs network evaluations: each sampler x step count against DDPM-1000, fp32 and W8,
on a fixed set of CamVid val maps sent over AWGN at each PSNR.

Every configuration of a (model, PSNR) pair regenerates the same received maps from the same
x_T per image, so differences between rows are the sampler's. Per row: LPIPS against the
original image, its difference to the reference's (ΔLPIPS, negative = better), LPIPS against
the reference output itself (same model, map and x_T), FID/KID of the generated set against
the originals, and median wall time per image. The reference (``--reference``, default the
paper's DDPM 1000 steps) always guides every step; ``--guidance-window`` applies to the others.
The fastest configuration (fewest evaluations) with ΔLPIPS <= 0.01 at every PSNR is reported
per precision: the candidate default for ``qgesco demo`` and the receiver. Writes NAME.{json,md}, the
plot NAME.png and NAME_samples.png, the images behind the numbers at the first PSNR.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import RESULTS, markdown_table, median_ms, save  # noqa: E402

from qgesco.channel import AWGN, encode, transmit  # noqa: E402
from qgesco.data import open_dataset  # noqa: E402
from qgesco.diffusion import PAPER_SAMPLER, create_diffusion, make_sampler, sampler_spec  # noqa: E402
from qgesco.fileio import (  # noqa: E402
    load_tensors,
    save_tensors,
    tensors_sha256,  # noqa: E402
)
from qgesco.metrics import InceptionFeatures, fid, kid, lpips  # noqa: E402
from qgesco.models.checkpoint import load_float_model  # noqa: E402
from qgesco.viz import grid, images_to_uint8, save_png  # noqa: E402

MAX_DELTA_LPIPS = 0.01


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def fixed_set(model_config, dataset: str, n_images: int, psnr: float, seed: int):
    """Originals in [0, 1], received maps and x_T for ``n_images`` val scenes spread over the split."""
    ds = open_dataset(dataset, image_hw=model_config.image_hw)
    if n_images > len(ds):
        raise ValueError(f"--n-images {n_images}: {dataset} has only {len(ds)} scenes")
    items = [ds[int(i)] for i in np.linspace(0, len(ds) - 1, n_images).round()]
    images = torch.stack([item[0] for item in items])
    labels = torch.stack([item[1] for item in items])
    instance = (
        None
        if model_config.no_instance
        else torch.stack([item[2] if item[2] is not None else item[1] for item in items])
    )
    y = encode(labels, model_config.num_classes, instance)
    received = transmit(
        y, AWGN(psnr, table="gesco"), model_config.num_classes, generator=torch.Generator().manual_seed(seed)
    )
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed + 1))
    return (images + 1) / 2, received, noise


def generate(sampler, model, y, noise, args, guidance_window):
    """Images in [0, 1] and the median wall time per image over the batches."""
    images, ms_per_image = [], []
    for start in range(0, len(y), args.batch_size):
        batch = slice(start, start + args.batch_size)
        generator = torch.Generator().manual_seed(args.seed + 2 + start)

        def run():
            images.append(
                sampler.sample(
                    model,
                    y[batch],
                    guidance=args.guidance,
                    noise=noise[batch],
                    generator=generator,
                    guidance_window=guidance_window,
                    batch_cfg=args.batch_cfg,
                )
            )

        ms_per_image.append(median_ms(run, warmup=0, repeat=1) / len(y[batch]))
    return (torch.cat(images) + 1) / 2, statistics.median(ms_per_image)


def cached_generate(cache: Path | None, key: dict, make) -> tuple[torch.Tensor, float]:
    """``make()`` once per ``key``: with ``--cache`` the images and their time are kept, so an
    interrupted or widened run (more samplers, steps or PSNRs) generates only what is new."""
    window = "" if key["window"] is None else "-window{}-{}".format(*key["window"])
    path = (
        None
        if cache is None
        else cache / f"{key['precision']}-psnr{key['psnr']:g}-{key['sampler']}{window}.safetensors"
    )
    if path is not None and path.exists():
        tensors, meta = load_tensors(path)
        if meta.get("key") == key:
            return tensors["images"], meta["ms_per_image"]
    images, ms = make()
    if path is not None:
        save_tensors(path, {"images": images}, {"kind": "bench-steps-images", "key": key, "ms_per_image": ms})
    return images, ms


def fastest_within(rows: list[dict], precision: str, reference_spec: str) -> dict | None:
    """The row with the fewest evaluations among samplers (not the reference) whose ΔLPIPS <= 0.01 at every PSNR."""
    by_sampler: dict[str, list[dict]] = {}
    for row in rows:
        if row["precision"] == precision and row["sampler"] != reference_spec:
            by_sampler.setdefault(row["sampler"], []).append(row)
    ok = [runs[0] for runs in by_sampler.values() if all(r["delta_lpips"] <= MAX_DELTA_LPIPS for r in runs)]
    return min(ok, key=lambda r: (r["evals"], r["ms_per_image"]), default=None)


def plot(rows: list[dict], reference_spec: str, path: Path) -> None:
    """LPIPS vs evaluations, one panel per PSNR: a colour per family, solid fp32, dashed W8;
    the grey band is where ΔLPIPS <= 0.01."""
    psnrs = sorted({r["psnr"] for r in rows}, reverse=True)
    families = list(dict.fromkeys(r["family"] for r in rows if r["sampler"] != reference_spec))
    colour = {family: f"C{k}" for k, family in enumerate(families)}
    fig, axes = plt.subplots(1, len(psnrs), figsize=(6 * len(psnrs), 4.5), squeeze=False)
    for ax, psnr in zip(axes[0], psnrs):
        for precision, style, marker in zip(dict.fromkeys(r["precision"] for r in rows), ("-", "--"), ("*", "X")):
            here = [r for r in rows if r["psnr"] == psnr and r["precision"] == precision]
            reference = next((r for r in here if r["sampler"] == reference_spec), None)
            if reference is not None:  # absent for W8 under --shared-reference: the fp32 band is its reference
                ax.axhspan(reference["lpips"], reference["lpips"] + MAX_DELTA_LPIPS, color="0.5", alpha=0.15, zorder=0)
                ax.plot(
                    [reference["evals"]],
                    [reference["lpips"]],
                    "k" + marker,
                    markersize=9,
                    label=f"{reference_spec} {precision}",
                )
            for family in families:
                line = sorted((r for r in here if r["family"] == family), key=lambda r: r["evals"])
                ax.plot(
                    [r["evals"] for r in line],
                    [r["lpips"] for r in line],
                    style,
                    color=colour[family],
                    marker="o",
                    label=f"{family} {precision}",
                )
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["evals"] for r in rows}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("network evaluations per image")
        ax.set_ylabel("LPIPS vs original (lower is better)")
        ax.set_title(f"PSNR {psnr:g} dB (band: {reference_spec} + {MAX_DELTA_LPIPS})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_samples(
    originals: torch.Tensor,
    images: dict[tuple[str, str], torch.Tensor],
    rows: list[dict],
    chosen: dict[str, dict | None],
    reference_spec: str,
    psnr: float,
    path: Path,
) -> None:
    """What the numbers mean, at one PSNR: original | reference | each family at its most steps
    (fp32) | the fastest configuration within the band, per precision."""
    picks = [("fp32", reference_spec)]
    for family in dict.fromkeys(r["family"] for r in rows if r["sampler"] != reference_spec):
        picks.append(("fp32", max((r for r in rows if r["family"] == family), key=lambda r: r["steps"])["sampler"]))
    picks += [(precision, row["sampler"]) for precision, row in chosen.items() if row is not None]
    columns = {"original": images_to_uint8(originals * 2 - 1)}
    for precision, spec in dict.fromkeys(picks):
        columns[f"{spec} {precision}"] = images_to_uint8(images[precision, spec] * 2 - 1)
    save_png(grid(columns, scale=3, row_titles=[f"{psnr:g} dB"] * len(originals)), path)


def add_delta_lpips(rows: list[dict], reference_spec: str, reference_of) -> None:
    """Each row's LPIPS minus that of its precision's reference row (``reference_of(precision)``) at its PSNR."""
    for row in rows:
        reference = next(
            r
            for r in rows
            if r["precision"] == reference_of(row["precision"])
            and r["psnr"] == row["psnr"]
            and r["sampler"] == reference_spec
        )
        row["delta_lpips"] = round(row["lpips"] - reference["lpips"], 4)


def summary_table(rows: list[dict], chosen: dict[str, dict | None], args: argparse.Namespace, window) -> str:
    """The markdown table of every row, the fastest configuration within the band per precision, and the settings."""
    columns = ["precision", "psnr", "sampler", "steps", "evals", "lpips", "delta_lpips", "lpips_vs_ref"]
    columns += ([] if args.no_fid else ["fid", "kid"]) + ["ms_per_image"]
    table = markdown_table(rows, columns)
    for precision, row in chosen.items():
        table += (
            f"\nFastest with ΔLPIPS <= {MAX_DELTA_LPIPS} at every PSNR ({precision}): "
            + (f"`{row['sampler']}` ({row['evals']} evaluations per image)" if row else "none")
            + "\n"
        )
    return table + (
        f"\nReference `{args.reference}` (ΔLPIPS and lpips_vs_ref are against it"
        + (", the fp32 model's for every precision" if args.shared_reference else ", each precision's own")
        + f"); {args.n_images} {args.dataset} maps, "
        f"guidance {args.guidance}"
        + (f", guidance window {window}" if window else "")
        + (", batched cfg" if args.batch_cfg else "")
        + f", model {args.model}"
        + (f", W8 {args.quantized}" if args.quantized else "")
        + ".\n"
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camvid-demo", help="our safetensors model: a path or a bundled name")
    ap.add_argument("--quantized", help="a W8 quantized checkpoint (qgesco.quant.load_quantized) for the W8 rows")
    ap.add_argument("--reference", default=PAPER_SAMPLER, help="the sampler the others are compared with (the paper's)")
    ap.add_argument("--dataset", default="camvid:val")
    ap.add_argument("--n-images", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", default="10,20,25,50,100,250")
    ap.add_argument(
        "--samplers",
        default="ddpm,ddim,ddimq,dpm++,dpm++q,dpm++l",
        help="sampler families; a trailing q / l selects quadratic / logSNR spacing (see docs/samplers.md)",
    )
    ap.add_argument("--psnr", default="100,10", help="channel PSNRs in dB (AWGN, GESCO's noise table)")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--guidance-window", help="t_lo,t_hi: guide only these model timesteps (not the reference row)")
    ap.add_argument("--batch-cfg", action="store_true", help="conditional + unconditional pass as one forward")
    ap.add_argument("--no-fid", action="store_true", help="skip FID/KID (Inception on every generated set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--name", default="steps", help="results/NAME.{json,md,png}")
    ap.add_argument(
        "--shared-reference",
        action="store_true",
        help="compare the W8 rows with the fp32 model's reference (the paper's receiver) instead of running "
        "W8's own: the cost of quantization and fewer steps together, at half the reference cost",
    )
    ap.add_argument(
        "--cache",
        metavar="DIR",
        help="keep every generated set in DIR and reuse it on a rerun with the same "
        "models and settings (resume; add samplers or steps at the cost of the new rows only)",
    )
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    window = tuple(ints(args.guidance_window)) if args.guidance_window else None

    diffusion = create_diffusion()
    configs = {args.reference: "reference"}  # spec -> family; the reference runs first
    for family in args.samplers.split(","):
        for steps in ints(args.steps):
            configs.setdefault(sampler_spec(family, steps, args.reference), family)
    samplers = {spec: make_sampler(diffusion, spec) for spec in configs}
    per_image = sum(
        s.num_evaluations(args.guidance, None if spec == args.reference else window) for spec, s in samplers.items()
    )
    w8_per_image = per_image - (
        samplers[args.reference].num_evaluations(args.guidance, None) if args.shared_reference else 0
    )
    in_all = len(args.psnr.split(",")) * args.n_images * (per_image + (w8_per_image if args.quantized else 0))
    print(
        f"{len(configs)} configurations: {per_image} network evaluations per image per PSNR for fp32"
        + (f", {w8_per_image} for W8" if args.quantized else "")
        + f"; {in_all} in all",
        file=sys.stderr,
    )
    fp32 = load_float_model(args.model)
    models = {"fp32": fp32}
    if args.quantized:
        from qgesco.quant import load_quantized

        models["W8"] = load_quantized(args.quantized)
    inception = None if args.no_fid else InceptionFeatures()

    cache = Path(args.cache) if args.cache else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    digests = {name: tensors_sha256(m.state_dict()) for name, m in models.items()}
    run_key = {
        "models": digests,
        "dataset": args.dataset,
        "n_images": args.n_images,
        "batch_size": args.batch_size,
        "guidance": args.guidance,
        "batch_cfg": args.batch_cfg,
        "seed": args.seed,
    }

    def reference_of(precision: str) -> str:
        return "fp32" if args.shared_reference else precision

    rows, shown = [], {}  # shown: the first PSNR's images, for the sample grid
    psnrs = [float(p) for p in args.psnr.split(",")]
    fp32_reference = None  # the fp32 receiver's reference outputs at this PSNR: the W8 rows share them
    for psnr in psnrs:
        originals, y, noise = fixed_set(fp32.config, args.dataset, args.n_images, psnr, args.seed)
        if psnr == psnrs[0]:
            shown_originals = originals
        real = None if inception is None else inception(originals)
        for precision, model in models.items():
            own_reference = reference_of(precision) == precision
            outputs: dict[str, torch.Tensor] = {} if own_reference else {args.reference: fp32_reference}
            for spec, family in configs.items():
                if spec == args.reference and not own_reference:
                    continue
                sampler, row_window = samplers[spec], (None if spec == args.reference else window)
                key = {
                    **run_key,
                    "precision": precision,
                    "psnr": psnr,
                    "sampler": spec,
                    "window": list(row_window) if row_window else None,
                }
                images, ms = cached_generate(cache, key, lambda: generate(sampler, model, y, noise, args, row_window))
                outputs[spec] = images
                if psnr == psnrs[0]:
                    shown[precision, spec] = images
                per_image = lpips(images, originals)
                row = {
                    "precision": precision,
                    "psnr": psnr,
                    "sampler": spec,
                    "family": family,
                    "steps": len(sampler.timesteps),
                    "evals": sampler.num_evaluations(args.guidance, row_window),
                    "lpips": round(per_image.mean().item(), 4),
                    "lpips_vs_ref": round(lpips(images, outputs[args.reference]).mean().item(), 4),
                    "ms_per_image": round(ms, 1),
                    "lpips_per_image": [round(v, 4) for v in per_image.tolist()],
                }
                if real is not None:
                    fake = inception(images)
                    row["fid"] = round(fid(real, fake), 2)
                    row["kid"] = round(kid(real, fake, subset_size=min(1000, len(fake)))[0], 4)
                rows.append(row)
                print(
                    f"{precision} PSNR {psnr:g} {spec}: LPIPS {row['lpips']} ({row['evals']} evals, "
                    f"{row['ms_per_image']} ms/image)",
                    file=sys.stderr,
                )
            if precision == "fp32":
                fp32_reference = outputs[args.reference]
    add_delta_lpips(rows, args.reference, reference_of)
    chosen = {precision: fastest_within(rows, precision, args.reference) for precision in models}
    table = summary_table(rows, chosen, args, window)
    plot(rows, args.reference, RESULTS / f"{args.name}.png")
    save_samples(shown_originals, shown, rows, chosen, args.reference, psnrs[0], RESULTS / f"{args.name}_samples.png")
    save(
        args.name,
        {
            "rows": rows,
            "fastest_within_delta_lpips": {p: r and r["sampler"] for p, r in chosen.items()},
            "max_delta_lpips": MAX_DELTA_LPIPS,
            "reference": args.reference,
            "model": args.model,
            "quantized": args.quantized,
            "n_images": args.n_images,
            "guidance": args.guidance,
            "guidance_window": window,
            "batch_cfg": args.batch_cfg,
            "shared_reference": args.shared_reference,
            "plot": f"{args.name}.png",
            "samples": f"{args.name}_samples.png",
        },
        table,
        "python bench/steps.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
