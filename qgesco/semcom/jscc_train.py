"""``train_jscc(out, channels=...)``: one DeepJSCC model (:mod:`~qgesco.semcom.jscc`) trained end to end through
the AWGN channel on a dataset split at the receiver's resolution.

Every step draws a batch of photos (random horizontal flips) and one SNR per photo uniformly over the model's
training range, and minimises the mean squared error of the decoded photo (Adam; the learning rate drops tenfold
for the last quarter, as the paper does). Rayleigh fading needs no training of its own: the receiver
equalises the known fade, which leaves AWGN at the effective SNR the decoder is told.

The run folder holds ``deepjscc.safetensors`` (the model, a few hundred kB, its settings and the validation
PSNRs in its metadata: the file ``qgesco compare`` loads) and ``state.pt`` (optimizer, step and the data
generator: what ``resume`` continues from). Both are rewritten atomically every ``save_every`` steps, the
model first, so a run killed at any moment resumes from its last save; a resumed run repeats the same batches
and noise as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import validate
from ..data import open_dataset
from ..fileio import atomic_path, read_meta, write_json
from .jscc import FILTERS, SNR_RANGE, DeepJSCC, load_jscc, save_jscc

#: The settings a resumed run must share with the run it continues.
RESUME_SETTINGS = ("data", "channels", "filters", "snr_range", "steps", "batch", "lr", "seed", "image_hw")
#: SNRs (dB) of the validation PSNRs written with the model.
VALIDATION_SNRS = (0.0, 5.0, 10.0, 20.0, 30.0)


def _photos(spec: str, root, image_hw) -> torch.Tensor:
    """The split's photos, (N, 3, H, W) in [0, 1], held in memory (CamVid train at 48x64 is 13 MB)."""
    dataset = open_dataset(spec, root, image_hw=tuple(image_hw))
    return torch.stack([(dataset[i].image + 1) / 2 for i in range(len(dataset))])


@torch.no_grad()
def validation_psnr(model: DeepJSCC, photos: torch.Tensor, snrs=VALIDATION_SNRS, seed: int = 0) -> dict[str, float]:
    """Mean PSNR (dB, on 8-bit images) of the decoded photos at each SNR over AWGN, seeded noise."""
    model.eval()
    out = {}
    for snr in snrs:
        g = torch.Generator().manual_seed(seed)
        decoded = model(photos, torch.full((len(photos),), float(snr)), generator=g)
        mse = ((decoded * 255).round() - (photos * 255).round()).square().flatten(1).mean(1)
        out[f"{snr:g}"] = float((10 * torch.log10(255**2 / mse)).mean())
    model.train()
    return out


def train_jscc(
    out,
    *,
    channels: int,
    data: str = "camvid:train",
    val_data: str = "camvid:val",
    data_root=None,
    image_hw=(48, 64),
    filters=FILTERS,
    snr_range=SNR_RANGE,
    steps: int = 1500,
    batch: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    save_every: int = 250,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one model of ``channels`` encoder planes (``channels / 16`` real channel uses per pixel) into
    ``out``; with ``resume`` continue the run there. Returns the model file's metadata."""
    for name, value in (("channels", channels), ("steps", steps), ("batch", batch), ("save_every", save_every)):
        validate.finite_number(name, value, low=1, integer=True)
    validate.finite_number("lr", lr, low=0)
    lo, hi = (validate.finite_number("SNR range", float(s)) for s in snr_range)
    if lo >= hi:
        raise ValueError(f"the SNR range must rise, got {lo:g}..{hi:g} dB")
    out = Path(out)
    settings = dict(
        data=data,
        channels=channels,
        filters=list(filters),
        snr_range=[lo, hi],
        steps=steps,
        batch=batch,
        lr=lr,
        seed=seed,
        image_hw=list(image_hw),
    )
    state_file, model_file = out / "state.pt", out / "deepjscc.safetensors"
    if resume and not state_file.is_file():
        raise ValueError(f"{out} has no state.pt to resume from; drop --resume to start a run there")
    if not resume and (state_file.exists() or model_file.exists()):
        raise ValueError(f"{out} already holds a DeepJSCC run; pass --resume to continue it or use another --out")
    if resume:
        old = json.loads((out / "settings.json").read_text())
        changed = [f"{k} {old.get(k)!r} -> {settings[k]!r}" for k in RESUME_SETTINGS if old.get(k) != settings[k]]
        if changed:
            raise ValueError(f"{out} was trained with other settings ({'; '.join(changed)}); use another --out")
    photos = _photos(data, data_root, image_hw)
    val_photos = _photos(val_data, data_root, image_hw)

    torch.manual_seed(seed)
    model = DeepJSCC(channels, tuple(filters), (lo, hi))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    step, seconds = 0, 0.0
    if resume:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state.get("model_sha256") != read_meta(model_file).get("sha256"):
            raise ValueError(f"{state_file} does not belong to {model_file} (killed between the two saves?); restart")
        model.load_state_dict(load_jscc(model_file)[0].state_dict())
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, seconds = int(state["step"]), float(state["seconds"])
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "settings.json", settings)
    model.train()

    def save(meta: dict[str, Any]) -> None:
        save_jscc(
            model, model_file, step=step, seconds=round(seconds, 1), trained_on=data, image_hw=list(image_hw), **meta
        )
        with atomic_path(state_file) as tmp:
            state = dict(
                optimizer=optimizer.state_dict(),
                generator=generator.get_state(),
                step=step,
                seconds=seconds,
                model_sha256=read_meta(model_file)["sha256"],
            )
            torch.save(state, tmp)

    bar = tqdm(total=steps, initial=step, desc=f"DeepJSCC c={channels}", unit="step", disable=not progress)
    started = time.perf_counter() - seconds
    while step < steps:
        for group in optimizer.param_groups:
            group["lr"] = lr if step < 3 * steps // 4 else lr / 10
        index = torch.randint(len(photos), (batch,), generator=generator)
        x = photos[index]
        flip = torch.rand(batch, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        snr = lo + (hi - lo) * torch.rand(batch, generator=generator)
        loss = (model(x, snr, generator=generator) - x).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        seconds = time.perf_counter() - started
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{-10 * math.log10(max(loss.item(), 1e-10)):.1f}")
        if step % save_every == 0 and step < steps:
            save({})
    bar.close()
    val = validation_psnr(model, val_photos)
    save({"validation_psnr": val, "validation_data": val_data})
    return read_meta(model_file)
