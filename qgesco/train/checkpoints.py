"""Training checkpoints: one folder per saved step, made current by an atomic pointer.

``ckpt/step_0001000/`` holds ``model.safetensors`` and ``ema.safetensors`` (our model
format, config in metadata) and ``state.pt`` (optimizer, step, timestep-sampler history,
config; plain tensors and containers, readable with ``weights_only=True``; its sha256 is stored in
``model.safetensors``'s metadata and checked on resume, as the safetensors files check their own). The folder is
written completely before ``ckpt/latest`` is atomically switched to it, so a run killed at
any moment leaves the previous checkpoint intact. ``ema.safetensors`` at the top of the run
folder is the latest EMA model, ready for ``qgesco sample``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_path, load_tensors, sha256_file, write_text
from ..models import UNetModel
from ..models.checkpoint import load_state_dict_strict, save_model


class CheckpointDir:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.root = run_dir / "ckpt"

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if not pointer.is_file():
            return None
        folder = self.root / pointer.read_text().strip()
        if not (folder / "state.pt").is_file():
            raise ValueError(
                f"{pointer} points to {folder}, which is incomplete; delete the pointer to use an older checkpoint"
            )
        return folder

    def save(self, step: int, model: UNetModel, ema: UNetModel, state: dict[str, Any], keep: int) -> Path:
        folder = self.root / f"step_{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "state.pt") as tmp:
            torch.save(state, tmp)
            state_sha256 = sha256_file(tmp)
        save_model(model, folder / "model.safetensors", step=step, state_sha256=state_sha256)
        save_model(ema, folder / "ema.safetensors", step=step, ema=True)
        write_text(self.root / "latest", folder.name + "\n")
        save_model(ema, self.run_dir / "ema.safetensors", step=step, ema=True)
        older = sorted(p for p in self.root.glob("step_*") if p != folder)
        for old in older[: max(0, len(older) + 1 - keep)]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def load(self, model: UNetModel, ema: UNetModel) -> dict[str, Any]:
        folder = self.latest()
        metas = {}
        for target, name in ((model, "model"), (ema, "ema")):
            tensors, metas[name] = load_tensors(folder / f"{name}.safetensors", device="cpu")
            load_state_dict_strict(target, tensors, str(folder / f"{name}.safetensors"))
        state_file = folder / "state.pt"
        fix = f"delete {folder} and {self.root / 'latest'} to resume from an older checkpoint, or start a new run"
        if metas["model"].get("state_sha256") not in (None, sha256_file(state_file)):
            raise ValueError(
                f"{state_file}: does not match the checksum saved with the checkpoint (modified or corrupted); {fix}"
            )
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for damaged or non-tensor pickles
            raise ValueError(f"{state_file}: not a readable training state ({type(e).__name__}); {fix}") from None
        missing = sorted(
            {"step", "optimizer", "schedule", "config", "world_size"} - set(state if isinstance(state, dict) else ())
        )
        if missing:
            raise ValueError(f"{state_file}: training state lacks {missing}; {fix}")
        return state
