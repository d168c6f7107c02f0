"""``evaluate(models, EvalSettings(data), out)``: send a dataset split's maps through the channel, regenerate
them with every model, score the images and write the paper's tables (docs/evaluation.md).

Why it is organised this way:

- **Same inputs for every model.** Image i's received map at PSNR p comes from a generator
  seeded by (seed, i, p) and its x_T from (seed, i), so they do not depend on the batch, the
  rank or the model; differences between rows are the models'. x_T is shared across PSNRs, so
  the columns differ only by the channel noise.
- **Fixed chunks.** Images are regenerated in chunks of ``batch_size`` consecutive indices; the
  per-step noise of a stochastic sampler (DDPM) comes from one generator per chunk, seeded by
  (seed, chunk start). A run is therefore reproducible for a given batch size (kept fixed by
  ``run.json``) on any number of ranks, which take every world-size-th chunk.
- **Resumable.** An image on disk is never regenerated (every file is written atomically);
  ``run.json`` refuses a folder made with other image-changing settings or other weights
  under a model's name.
- **Scores from the saved 8-bit PNGs**, as FID's reference code reads images, so a resumed run
  scores exactly what a fresh one would. Each rank scores its own chunks; rank 0 gathers the
  per-image values and confusion matrices. FID and KID use the Inception features of each whole
  folder, cached per folder (:func:`qgesco.metrics.folder_features`), so a rerun that adds a
  model computes only that model's features.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from tqdm.auto import tqdm

from .. import validate
from ..channel import encode, make_channel, transmit
from ..data import CAMVID_CLASSES, open_dataset
from ..diffusion import create_diffusion, make_sampler
from ..distributed import closing_process_group, setup_distributed
from ..fileio import write_json, write_text
from ..metrics import ConfusionMatrix, fid, folder_features, kid, load_image, weights
from ..metrics.perceptual import MIN_SIDE as LPIPS_MIN_SIDE
from ..models.checkpoint import resolve_source
from ..receiver import regenerate
from ..runcore import SCORE_BATCH, generator, psnr_key, psnr_label, score_images
from ..viz import grid, images_to_uint8, labels_to_uint8, maps_to_uint8, save_png
from . import report
from .models import EvalModel, load_eval_model
from .settings import IMAGE_SETTINGS, METRICS, EvalSettings

_PER_IMAGE = ("lpips", "image_psnr", "ssim")
_CHANNEL, _X_T, _STEPS = 1, 2, 3  # the streams of runcore's seeding scheme


def chunks(count: int, batch_size: int) -> list[range]:
    """The fixed regeneration batches: ``batch_size`` consecutive indices each, the last one shorter."""
    return [range(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def shard(count: int, batch_size: int, rank: int, world_size: int) -> list[range]:
    """Rank ``rank``'s chunks: every ``world_size``-th, so the ranks' loads differ by one chunk at most."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    return chunks(count, batch_size)[rank::world_size]


def image_path(out: Path, name: str, index: int, psnr_db: float | None = None) -> Path:
    """``images/<model>/psnr<p>/<index>.png``; the originals live in ``images/original/``."""
    folder = out / "images" / name
    if psnr_db is not None:
        folder = folder / f"psnr{psnr_label(psnr_db)}"
    return folder / f"{index:05d}.png"


class Scenes:
    """The split's maps as sent and received, and the x_T of each image, all seeded per image."""

    def __init__(self, dataset, config, settings: EvalSettings):
        self.dataset, self.config, self.s = dataset, config, settings

    def labels(self, indices) -> torch.Tensor:
        return torch.stack([self.dataset[i].label for i in indices])

    def received(self, indices, psnr_db: float) -> torch.Tensor:
        cfg, s = self.config, self.s
        link = make_channel(s.channel, psnr_db, table=s.noise_table)
        maps = []
        for i in indices:
            sample = self.dataset[i]
            y = encode(sample.label[None], cfg.num_classes, None if cfg.no_instance else sample.instance[None])
            g = generator(s.seed, _CHANNEL, i, psnr_key(psnr_db))
            maps.append(transmit(y, link, cfg.num_classes, cleanup=s.cleanup, compress=s.compress, generator=g))
        return torch.cat(maps)

    def x_T(self, indices) -> torch.Tensor:
        shape = (3, *self.config.image_hw)
        return torch.stack([torch.randn(shape, generator=generator(self.s.seed, _X_T, i)) for i in indices])


def _save_images(images: torch.Tensor, paths: list[Path]) -> None:
    for array, path in zip(images_to_uint8(images), paths):
        if not path.exists():
            save_png(Image.fromarray(array), path)


def _regenerate_shard(
    models: list[EvalModel], scenes: Scenes, out: Path, my_chunks: list[range], device: torch.device, progress: bool
) -> None:
    s = scenes.s
    for chunk in my_chunks:
        _save_images(
            torch.stack([scenes.dataset[i].image for i in chunk]), [image_path(out, "original", i) for i in chunk]
        )
    todo = [
        (p, chunk, [m for m in models if not all(image_path(out, m.name, i, p).exists() for i in chunk)])
        for p in s.psnrs
        for chunk in my_chunks
    ]
    todo = [(p, chunk, pending) for p, chunk, pending in todo if pending]
    samplers = {m.name: make_sampler(create_diffusion(learn_sigma=m.config.learn_sigma), s.sampler) for m in models}
    total = sum(len(chunk) * len(pending) for _, chunk, pending in todo)
    with tqdm(
        total=total,
        unit="img",
        desc=f"regenerating, threads={torch.get_num_threads()}",
        disable=not progress or not total,
    ) as bar:
        for p, chunk, pending in todo:
            y, noise = scenes.received(chunk, p).to(device), scenes.x_T(chunk).to(device)
            for m in pending:
                bar.set_postfix_str(f"{m.name} @ {psnr_label(p)} dB")
                g = generator(s.seed, _STEPS, chunk.start, device=device)
                images = regenerate(
                    m.model,
                    y,
                    sampler=samplers[m.name],
                    guidance=s.guidance,
                    guidance_window=s.guidance_window,
                    generator=g,
                    noise=noise,
                )
                _save_images(images, [image_path(out, m.name, i, p) for i in chunk])
                bar.update(len(chunk))


def _saved(path: Path, read):
    """``read(path)`` of an image this run saved earlier, with one line if it was damaged since."""
    try:
        return read(path)
    except (OSError, SyntaxError) as e:
        raise ValueError(
            f"{path}: a saved image of this run is damaged ({e}); delete it and rerun to regenerate it"
        ) from None


def _read_png(path: Path) -> np.ndarray:
    def read(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))

    return _saved(path, read)


def _load(paths: list[Path], device: torch.device) -> torch.Tensor:
    return torch.stack([_saved(p, load_image) for p in paths]).to(device)


def _score_shard(
    names: list[str], scenes: Scenes, out: Path, indices: list[int], metrics: tuple[str, ...], device: torch.device
) -> dict[str, Any]:
    """Per-image values and confusion matrices of this rank's images."""
    sets = [(n, p) for n in names for p in scenes.s.psnrs] if {"lpips", "pixel", "miou"} & set(metrics) else []
    if "miou" in metrics:
        sets.append(("original", None))  # the segmentation network's score on real images: the ceiling
    wanted = {"lpips": ("lpips",), "pixel": ("psnr", "ssim"), "miou": ("confusion",)}
    num_classes = scenes.dataset.num_classes
    part: dict[str, Any] = {"index": list(indices), "sets": {}}
    for name, p in sets:
        scores = [k for m in metrics for k in wanted.get(m, ()) if p is not None or k == "confusion"]
        acc: dict[str, Any] = {k: [] for k in _PER_IMAGE}
        confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        for start in range(0, len(indices), SCORE_BATCH):
            batch = indices[start : start + SCORE_BATCH]
            reference = _load([image_path(out, "original", i) for i in batch], device)
            image = reference if p is None else _load([image_path(out, name, i, p) for i in batch], device)
            labels = scenes.labels(batch) if "confusion" in scores else None
            for record in score_images(image, reference, labels, num_classes, scores):
                for key, score in (("lpips", "lpips"), ("image_psnr", "psnr"), ("ssim", "ssim")):
                    if score in record:
                        acc[key].append(record[score])
                if "confusion" in record:
                    confusion += record["confusion"]
        acc["confusion"] = confusion
        part["sets"][(name, p)] = acc
    return part


def _merge(parts: list[dict[str, Any]]) -> dict:
    """The ranks' parts as one, in image order."""
    order = np.argsort([i for part in parts for i in part["index"]], kind="stable")
    merged = {}
    for key in parts[0]["sets"]:
        accs = [part["sets"][key] for part in parts]
        values = {k: [v for a in accs for v in a[k]] for k in _PER_IMAGE}
        merged[key] = {k: [v[j] for j in order] if v else [] for k, v in values.items()}
        merged[key]["confusion"] = sum(a["confusion"] for a in accs)
    return merged


def _miou_entry(matrix: np.ndarray) -> dict[str, Any]:
    cm = ConfusionMatrix(len(matrix))
    cm.matrix = matrix
    return {
        "miou": cm.miou(),
        "pixel_accuracy": cm.pixel_accuracy(),
        "iou": [None if np.isnan(v) else float(v) for v in cm.iou()],
    }


def _summarise(
    merged: dict,
    names: list[str],
    psnrs: list[float],
    metrics: tuple[str, ...],
    count: int,
    out: Path,
    device: torch.device,
) -> tuple[dict, dict, dict]:
    original = _miou_entry(merged[("original", None)]["confusion"]) if "miou" in metrics else {}
    real = folder_features(image_path(out, "original", 0).parent, device=device) if "fid" in metrics else None
    results: dict[str, dict] = {}
    per_image: dict[str, dict] = {}
    for name in names:
        results[name], per_image[name] = {}, {}
        for p in psnrs:
            m = merged.get((name, p))
            r: dict[str, Any] = {"n": count}
            if "lpips" in metrics:
                r["lpips"], r["lpips_std"] = float(np.mean(m["lpips"])), float(np.std(m["lpips"]))
            if "fid" in metrics:
                features = folder_features(image_path(out, name, 0, p).parent, device=device)
                r["fid"] = fid(features, real)
                r["kid"], r["kid_std"] = kid(features, real)
            if "miou" in metrics:
                r.update(_miou_entry(m["confusion"]))
            if "pixel" in metrics:
                r["image_psnr"], r["ssim"] = float(np.mean(m["image_psnr"])), float(np.mean(m["ssim"]))
            results[name][psnr_label(p)] = r
            per_image[name][psnr_label(p)] = {k: m[k] for k in _PER_IMAGE if m and m[k]}
    return results, per_image, original


def _check_metrics(metrics, config, dataset) -> tuple[str, ...]:
    """The metric groups to compute: all that apply by default; asked-for ones that cannot apply are errors."""
    h, w = config.image_hw
    reasons = {
        "lpips": f"LPIPS needs images of at least {LPIPS_MIN_SIDE}x{LPIPS_MIN_SIDE} (AlexNet's pools), "
        f"these are {h}x{w}"
        if min(h, w) < LPIPS_MIN_SIDE
        else None,
        "miou": f"the bundled segmentation network knows CamVid's {len(CAMVID_CLASSES)} classes, "
        "the data has other classes"
        if tuple(dataset.class_names) != tuple(CAMVID_CLASSES)
        else None,
    }
    if metrics is None:
        return tuple(m for m in METRICS if not reasons.get(m))
    for m in metrics:
        if reasons.get(m):
            raise ValueError(f"metric {m!r}: {reasons[m]}; leave it out of the metrics")
    return metrics


def _check_models(models: list[EvalModel]) -> None:
    names = [m.name for m in models]
    if not models or len(set(names)) != len(names):
        raise ValueError(f"give one or more models with distinct names, got {names}")
    first = models[0].config
    for m in models[1:]:
        c = m.config
        if (c.image_hw, c.num_classes, c.no_instance) != (first.image_hw, first.num_classes, first.no_instance):
            raise ValueError(
                f"models {models[0].name!r} and {m.name!r} take different inputs (image size, classes or instance "
                "edges); evaluate models of one architecture together"
            )


def _run_record(out: Path, settings: EvalSettings, models: list[EvalModel]) -> dict[str, Any]:
    """``run.json`` with these models added, after checking the folder's earlier runs agree."""
    values = settings.to_dict()
    record = {"settings": {k: values[k] for k in IMAGE_SETTINGS}, "models": {m.name: m.info["sha256"] for m in models}}
    record = json.loads(json.dumps(record))
    path = out / "run.json"
    if not path.is_file():
        return record
    old = json.loads(path.read_text())
    changed = [
        f"{k} {old['settings'].get(k)!r} -> {v!r}" for k, v in record["settings"].items() if old["settings"].get(k) != v
    ]
    if changed:
        raise ValueError(
            f"{out} holds images made with other settings ({'; '.join(changed)}); use another --out, "
            "or the same settings to resume"
        )
    for name, digest in record["models"].items():
        if old["models"].get(name) not in (None, digest) and digest is not None:
            raise ValueError(
                f"{out} holds images of a model {name!r} with other weights; give this model another name, "
                "or use another --out"
            )
    return {"settings": record["settings"], "models": {**old["models"], **record["models"]}}


@dataclass
class EvalJob:
    """A checked run: the settings resolved against the loaded models and the opened dataset."""

    settings: EvalSettings
    models: list[EvalModel]
    dataset: Any

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.settings.metrics

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def config(self):
        return self.models[0].config


def evaluate(
    models: Mapping[str, Any], settings: EvalSettings, out: str | os.PathLike, device: str = "auto"
) -> dict[str, Any] | None:
    """Regenerate ``settings.images`` scenes of ``settings.data`` (all by default) at every PSNR with
    every model and write ``metrics.json``, ``table.md``, ``metrics_vs_psnr.png`` and the sample grid to
    ``out``.

    ``models`` maps names to model files, bundled names or loaded models; ``settings``
    (:class:`~qgesco.evaluate.settings.EvalSettings`) holds everything that shapes the run, the
    paper's by default. Under ``torchrun`` every rank regenerates its share; rank 0 returns the
    metrics, the others None.
    """
    if not isinstance(settings, EvalSettings):
        raise ValueError(f"settings must be an EvalSettings, got {type(settings).__name__}")
    started = time.perf_counter()
    out = Path(out)
    with closing_process_group():
        env = setup_distributed(device)
        validate.output_dir("out", out)
        job = prepare(models, settings, env.device)
        record = _run_record(out, job.settings, job.models)
        if env.is_main:
            write_json(out / "run.json", record)
        regenerate_images(job, out, env, env.is_main and sys.stderr.isatty())
        merged = score(job, out, env)
        return None if merged is None else write_report(job, merged, out, env, started)


def prepare(sources: Mapping[str, Any], settings: EvalSettings, device: torch.device) -> EvalJob:
    """Load the models and the data and check them against the settings, before any image is made."""
    if not isinstance(sources, Mapping):
        raise ValueError("models: give a mapping of names to model files, bundled names or loaded models")
    for name, source in sources.items():  # every name checked before the first model loads
        if isinstance(source, (str, os.PathLike)):
            try:
                resolve_source(source)
            except (FileNotFoundError, ValueError) as e:
                raise type(e)(f"model {name!r}: {e}") from None
    models = [load_eval_model(name, source, device) for name, source in sources.items()]
    _check_models(models)
    cfg, data = models[0].config, settings.data
    dataset = open_dataset(data, settings.data_root, image_hw=cfg.image_hw)
    if not cfg.no_instance and not dataset.has_instances:
        raise ValueError(f"the models take an instance-edge plane but {data} has no instance maps")
    if dataset.num_classes != cfg.num_classes:
        raise ValueError(
            f"{data} has {dataset.num_classes} classes but the models {cfg.num_classes}; "
            "evaluate on the models' dataset"
        )
    count = len(dataset) if settings.images is None else settings.images
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(dataset):
        raise ValueError(f"images={settings.images!r}: {data} has {len(dataset)} scenes; ask for 1..{len(dataset)}")
    for i in range(count):  # a damaged label would otherwise fail after run.json and the originals were written
        sample = dataset[i]
        if not 0 <= int(sample.label.min()) <= int(sample.label.max()) < cfg.num_classes:
            raise ValueError(
                f"{data}: scene {i} ({sample.name}) has label values outside 0..{cfg.num_classes - 1}; "
                "check the dataset with qgesco data check (a dataset cache is rebuilt once deleted)"
            )
    metrics = _check_metrics(settings.metrics, cfg, dataset)
    if "fid" in metrics and count < 2:
        raise ValueError("FID and KID need at least 2 images; raise the number of images or leave out 'fid'")
    for m, name in (("lpips", "lpips-alex"), ("fid", "inception-fid")):
        if m in metrics:
            weights.verified_path(name)  # missing weights fail now, with what to do, not after regenerating
    names = [m.name for m in models]
    reference = settings.reference or next((m.name for m in models if m.info["kind"] == "fp"), names[0])
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not one of the models {names}")
    settings = dataclasses.replace(settings, images=count, image_hw=cfg.image_hw, metrics=metrics, reference=reference)
    return EvalJob(settings, models, dataset)


def regenerate_images(job: EvalJob, out: Path, env, progress: bool) -> None:
    """This rank's share of the images (and the originals), skipping those already on disk."""
    my_chunks = shard(job.settings.images, job.settings.batch_size, env.rank, env.world_size)
    _regenerate_shard(job.models, Scenes(job.dataset, job.config, job.settings), out, my_chunks, env.device, progress)


def score(job: EvalJob, out: Path, env) -> dict | None:
    """Per-image scores and confusion matrices of every rank's images, merged on rank 0 (None elsewhere)."""
    my_chunks = shard(job.settings.images, job.settings.batch_size, env.rank, env.world_size)
    scenes = Scenes(job.dataset, job.config, job.settings)
    part = _score_shard(job.names, scenes, out, [i for c in my_chunks for i in c], job.metrics, env.device)
    parts = [part]
    if env.world_size > 1:
        parts = [None] * env.world_size
        dist.all_gather_object(parts, part)
    return _merge(parts) if env.is_main else None


def write_report(job: EvalJob, merged: dict, out: Path, env, started: float) -> dict[str, Any]:
    """metrics.json, table.md, the metrics-vs-PSNR plot and the sample grid; returns the metrics."""
    s, cfg, names, count = job.settings, job.config, job.names, job.settings.images
    results, per_image, original = _summarise(merged, names, s.psnrs, job.metrics, count, out, env.device)
    result = {
        "settings": s.to_dict(),
        "metrics": list(job.metrics),
        "models": {m.name: m.info for m in job.models},
        "images": {"count": count, "names": [job.dataset[i].name for i in range(count)]},
        "original": original,
        "results": results,
        "per_image": per_image,
        "world_size": env.world_size,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "metrics.json", result)
    write_text(out / "table.md", report.render(result))
    report.plot_metrics(result, out / "metrics_vs_psnr.png")
    # rows spread over the split: its neighbouring images are frames of one video
    rows = np.linspace(0, count - 1, min(s.grid_images, count)).round().astype(int).tolist()
    scenes = Scenes(job.dataset, cfg, s)
    columns = {
        "map": labels_to_uint8(scenes.labels(rows), cfg.num_classes),
        "received": maps_to_uint8(scenes.received(rows, s.grid_psnr), cfg.num_classes),
    }
    for name, p in [(n, s.grid_psnr) for n in names] + [("original", None)]:
        columns[name] = np.stack([_read_png(image_path(out, name, i, p)) for i in rows])
    save_png(grid(columns, scale=3), out / f"grid_psnr{psnr_label(s.grid_psnr)}.png")
    return result
