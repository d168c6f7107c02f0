"""Block reconstruction (BRECQ) with AdaRound, block by block through the UNet, resumable.

Blocks are the UNet's units in forward order: the time embedding MLP, the input conv, every
Res/SDMRes block (with its SPADE convs), attention block and up/down sampler, and the output
head. For each, forward hooks capture its inputs from the *partly quantized* model (earlier
blocks already quantized, so this block learns to absorb their error) and its target output
from the float model, over the calibration set. Then AdaRound learns the rounding of the
block's weights — and, with activation quantization, LSQ the activation step sizes — to
minimise ``||block_q(x_q) - block_fp(x_fp)||^2``, the regulariser's beta annealed from 20 to
2 after a warm-up, and the rounding is made hard. Learned rounding is kept only if its error
on the calibration data is no larger than nearest rounding's (so the guarantee "never worse
per block" holds even with very few iterations).

One pass when it fits: the float model runs once over the calibration set, keeping every
block's output (the targets), then the quantized model runs once over the whole set as one batch,
and a pre-hook on each block reconstructs it on the inputs it is about to receive before the
forward goes on through it. Every block thus sees exactly the partly quantized inputs of the
block-by-block algorithm, for one forward of each model instead of one (prefix) of each per block
(at the published width, 61 blocks: minutes instead of half an hour); the one-batch pass holds
about as much again in activations as the targets. When the targets do not fit ``cache_mb``, each
block's data is captured by rerunning both models' prefixes, cached if it fits, else streamed in
chunks (bounded memory, O(blocks x forward) time). Each finished block is saved to the resume
folder, so a crash continues from the last finished block and, every block seeding its own
generator, ends with the same result as an uninterrupted run.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..fileio import load_tensors, read_meta, save_tensors
from ..models.unet import UNetModel
from .calibration import CalibrationSet
from .layers import QuantLayer
from .quantizers import MIN_SCALE, ActQuantizer
from .settings import QuantConfig
from .swap import QuantPlan, act_quantizers, quant_layers


def block_units(model: UNetModel) -> list[tuple[str, nn.Module]]:
    """The reconstruction blocks, in forward order, that hold anything quantized."""
    names = ["time_embed"]
    names += [f"input_blocks.{i}.{j}" for i, block in enumerate(model.input_blocks) for j in range(len(block))]
    names += [f"middle_block.{j}" for j in range(len(model.middle_block))]
    names += [f"output_blocks.{i}.{j}" for i, block in enumerate(model.output_blocks) for j in range(len(block))]
    names.append("out")
    units = [(name, model.get_submodule(name)) for name in names]
    return [
        (name, unit) for name, unit in units if any(isinstance(m, (QuantLayer, ActQuantizer)) for m in unit.modules())
    ]


class _Stop(Exception):
    """Raised by a capture hook: nothing after the block is needed."""


def _capture(model: nn.Module, unit: nn.Module, batch: tuple[torch.Tensor, ...], inputs: bool):
    """The positional inputs of ``unit`` (or its output) when ``model`` runs on ``batch``."""
    box = []

    def pre_hook(module, args):
        box.append(tuple(a.detach() for a in args))
        raise _Stop

    def post_hook(module, args, output):
        box.append(output.detach())
        raise _Stop

    handle = unit.register_forward_pre_hook(pre_hook) if inputs else unit.register_forward_hook(post_hook)
    try:
        with torch.no_grad():
            model(*batch)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not box:
        raise RuntimeError("the model's forward never reached the block being captured")
    return box[0]


class BlockData:
    """Inputs (from the quantized model) and targets (from the float model) of one block, in memory."""

    def __init__(self, inputs: list[torch.Tensor], target: torch.Tensor, batch_size: int):
        self.inputs, self.target, self.batch_size = inputs, target, batch_size
        self.chunk = len(self)

    def __len__(self) -> int:
        return self.target.shape[0]

    def chunks(self) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        yield self.inputs, self.target

    def batches(self) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        for inputs, target in self.chunks():
            for a in range(0, target.shape[0], self.batch_size):
                yield [v[a : a + self.batch_size] for v in inputs], target[a : a + self.batch_size]


class CapturedBlockData(BlockData):
    """A block's data captured by running both models' prefixes over the calibration set: held if
    it fits ``cache_bytes``, otherwise produced chunk by chunk on every pass (bounded memory)."""

    def __init__(
        self,
        qmodel: nn.Module,
        fp_model: nn.Module,
        name: str,
        calib: CalibrationSet,
        batch_size: int,
        cache_bytes: float,
    ):
        self.qmodel, self.fp_model = qmodel, fp_model
        self.q_unit, self.fp_unit = qmodel.get_submodule(name), fp_model.get_submodule(name)
        self.calib = calib
        self.device = next(qmodel.parameters()).device
        first = self._capture(0, min(batch_size, len(calib)), batch_size)
        per_sample = sum(t.numel() * t.element_size() for t in (*first[0], first[1])) / first[1].shape[0]
        self.cached = None
        if len(calib) <= max(batch_size, int(cache_bytes // per_sample)):  # the first batch is kept
            parts = [first] + ([self._capture(batch_size, len(calib), batch_size)] if len(calib) > batch_size else [])
            self.cached = [torch.cat(group) for group in zip(*(p[0] for p in parts))], torch.cat([p[1] for p in parts])
            super().__init__(*self.cached, batch_size)
        else:
            self.batch_size, self.chunk = batch_size, max(batch_size, int(cache_bytes // per_sample))

    def __len__(self) -> int:
        return len(self.calib)

    def _capture(self, start: int, stop: int, batch_size: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        inputs, targets = [], []
        for a in range(start, stop, batch_size):
            batch = tuple(v.to(self.device) for v in self.calib.batch(slice(a, min(a + batch_size, stop))))
            inputs.append(_capture(self.qmodel, self.q_unit, batch, inputs=True))
            targets.append(_capture(self.fp_model, self.fp_unit, batch, inputs=False).float())
        return [torch.cat(parts) for parts in zip(*inputs)], torch.cat(targets)

    def chunks(self) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        if self.cached is not None:
            yield self.cached
            return
        for start in range(0, len(self.calib), self.chunk):
            yield self._capture(start, min(start + self.chunk, len(self.calib)), self.batch_size)


def block_targets(
    fp_model: nn.Module, names: list[str], calib: CalibrationSet, batch_size: int, cache_bytes: float
) -> dict[str, torch.Tensor] | None:
    """Every block's float output over the calibration set from one pass of the float model, or None
    (after one batch) when they would not fit ``cache_bytes``."""
    device = next(fp_model.parameters()).device
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    handles = [
        fp_model.get_submodule(name).register_forward_hook(
            lambda module, args, output, name=name: outputs[name].append(output.detach().float())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            for a in range(0, len(calib), batch_size):
                batch = calib.batch(slice(a, min(a + batch_size, len(calib))))
                fp_model(*(v.to(device) for v in batch))
                if a == 0:
                    per_sample = sum(parts[0].numel() * 4 for parts in outputs.values()) / batch[0].shape[0]
                    if per_sample * len(calib) > cache_bytes:
                        return None
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts) for name, parts in outputs.items()}


def block_error(unit: nn.Module, data: BlockData) -> float:
    """Relative squared error ``sum (q - fp)^2 / sum fp^2`` of the block over the calibration set."""
    num = den = 0.0
    with torch.no_grad():
        for inputs, target in data.batches():
            num += (unit(*inputs).float() - target).double().pow(2).sum().item()
            den += target.double().pow(2).sum().item()
    return num / max(den, 1e-30)


def _beta(step: int, settings: QuantConfig, warm: int) -> float:
    """Regulariser exponent: linear from ``beta[0]`` to ``beta[1]`` after the warm-up."""
    start, end = settings.beta
    return end + (start - end) * max(0.0, 1 - (step - warm) / max(1, settings.iters - warm))


def reconstruct_block(
    name: str,
    unit: nn.Module,
    trainable: list[QuantLayer],
    data: BlockData,
    settings: QuantConfig,
    generator: torch.Generator,
    progress: bool,
) -> dict[str, Any]:
    """Calibrate one block's activation ranges, learn its rounding, keep the better rounding."""
    started = time.perf_counter()
    acts = [a for _, a in act_quantizers(unit)]
    for a in acts:
        a.observe()
    if acts:
        with torch.no_grad():
            for inputs, _ in data.batches():
                unit(*inputs)
        for a in acts:
            a.finish_observing()
    nearest = block_error(unit, data)
    report = {"block": name, "error_nearest": nearest, "error": nearest, "rounding": "nearest", "iters": 0}
    if settings.iters and trainable:
        snapshot = {k: v.clone() for k, v in unit.state_dict().items()}
        _learn(unit, trainable, acts, data, settings, generator, progress, name)
        learned = block_error(unit, data)
        report.update(error_learned=learned, iters=settings.iters)
        if learned <= nearest:
            report.update(error=learned, rounding="learned")
        else:
            unit.load_state_dict(snapshot)
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def _learn(
    unit: nn.Module,
    layers: list[QuantLayer],
    acts: list[ActQuantizer],
    data: BlockData,
    settings: QuantConfig,
    generator: torch.Generator,
    progress: bool,
    name: str,
) -> None:
    """AdaRound (+ LSQ) on the block, then hard rounding."""
    for layer in layers:
        layer.start_adaround()
    scales = [a.scale for a in acts] if settings.learn_act_scale else []
    groups = [{"params": [layer.rounding.v for layer in layers], "lr": settings.lr}]
    schedules = [lambda step: 1.0]
    if scales:
        groups.append({"params": scales, "lr": settings.act_lr})
        schedules.append(lambda step: 0.5 * (1 + math.cos(math.pi * step / settings.iters)))
    for s in scales:
        s.requires_grad_(True)
    optimizer = torch.optim.Adam(groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)
    warm = int(settings.warmup * settings.iters)
    n = len(data)
    step = 0
    bar = tqdm(total=settings.iters, desc=f"AdaRound {name}", leave=False, disable=not progress)
    try:
        for chunk_start, (inputs, target) in zip(range(0, n, data.chunk), data.chunks()):
            chunk_end = chunk_start + target.shape[0]
            quota = round(chunk_end * settings.iters / n) - round(chunk_start * settings.iters / n)
            for _ in range(quota):
                idx = torch.randperm(target.shape[0], generator=generator)[: settings.batch_size].to(target.device)
                with torch.enable_grad():
                    out = unit(*(v[idx] for v in inputs))
                    loss = (out.float() - target[idx]).pow(2).sum(1).mean()
                    if step >= warm and settings.reg_weight:
                        beta = _beta(step, settings, warm)
                        loss = loss + settings.reg_weight * sum(layer.rounding.regularizer(beta) for layer in layers)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    for s in scales:
                        s.clamp_(min=MIN_SCALE)
                step += 1
                bar.update(1)
    finally:
        bar.close()
        for s in scales:
            s.requires_grad_(False)
    for layer in layers:
        layer.harden()


class ResumeStore:
    """One file per finished block in a folder, stamped with the run's fingerprint.

    The fingerprint covers the float weights, the calibration set and every setting, so a
    folder left by another run is refused rather than silently mixed in.
    """

    def __init__(self, folder: str | os.PathLike, run_id: str):
        self.folder, self.run_id = Path(folder), run_id
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"resume={folder}: expected a folder for per-block state, found a file")
        for path in sorted(self.folder.glob("block-*.safetensors")) if self.folder.is_dir() else []:
            if read_meta(path).get("run") != run_id:
                raise ValueError(
                    f"{self.folder} holds the state of another quantization run (other model, calibration set "
                    "or settings); delete it, or resume with the same settings"
                )

    def _path(self, index: int, name: str) -> Path:
        return self.folder / f"block-{index:03d}-{name}.safetensors"

    def load(self, index: int, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        path = self._path(index, name)
        if not path.exists():
            return None
        tensors, meta = load_tensors(path)
        return tensors, meta["report"]

    def save(self, index: int, name: str, unit: nn.Module, report: dict[str, Any]) -> None:
        save_tensors(
            self._path(index, name),
            unit.state_dict(),
            {"kind": "quantize-resume", "run": self.run_id, "report": report},
        )


def reconstruct(
    qmodel: UNetModel,
    fp_model: UNetModel,
    calib: CalibrationSet,
    plan: QuantPlan,
    settings: QuantConfig,
    resume: ResumeStore | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Calibrate and reconstruct every block of ``qmodel`` in order; returns one report per block."""
    units = block_units(qmodel)
    for _, a in act_quantizers(qmodel):
        a.enabled = False
    bar = tqdm(
        total=len(units),
        desc=f"reconstructing blocks, threads={torch.get_num_threads()}",
        unit="block",
        disable=not progress,
    )
    reports = []

    def finish_block(index: int, name: str, unit: nn.Module, data: Callable[[], BlockData]) -> None:
        stored = resume.load(index, name) if resume is not None else None
        if stored is not None:
            unit.load_state_dict(stored[0])
            report = {**stored[1], "resumed": True}
            for _, a in act_quantizers(unit):
                a.enabled = True
        else:
            trainable = [
                layer for sub, layer in quant_layers(unit) if plan["layers"][f"{name}.{sub}" if sub else name]["called"]
            ]
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + index)
            report = reconstruct_block(name, unit, trainable, data(), settings, generator, progress)
            if resume is not None:
                resume.save(index, name, unit, report)
        for _, layer in quant_layers(unit):
            layer.finish()
        reports.append(report)
        bar.update(1)
        bar.set_postfix(block=name, error=f"{report['error']:.3g}")

    cache_bytes = settings.cache_mb * 2**20
    try:
        targets = block_targets(fp_model, [name for name, _ in units], calib, settings.batch_size, cache_bytes)
        if targets is None:
            for index, (name, unit) in enumerate(units):
                finish_block(
                    index,
                    name,
                    unit,
                    lambda name=name: CapturedBlockData(
                        qmodel, fp_model, name, calib, settings.batch_size, cache_bytes
                    ),
                )
        else:
            _one_pass(qmodel, units, calib, targets, settings.batch_size, finish_block)
    finally:
        bar.close()
    return reports


def _one_pass(
    qmodel: UNetModel,
    units: list[tuple[str, nn.Module]],
    calib: CalibrationSet,
    targets: dict[str, torch.Tensor],
    batch_size: int,
    finish_block: Callable[[int, str, nn.Module, Callable[[], BlockData]], None],
) -> None:
    """Run ``qmodel`` once over the whole calibration set; each block is finished by a pre-hook on
    the inputs the forward is about to give it (its own calls from inside the hook pass through)."""
    done: set[str] = set()

    def pre_hook(index: int, name: str, unit: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if name in done:
            return
        done.add(name)
        inputs = [a.detach() for a in args]
        finish_block(index, name, unit, lambda: BlockData(inputs, targets.pop(name), batch_size))
        targets.pop(name, None)

    handles = [
        unit.register_forward_pre_hook(functools.partial(pre_hook, index, name))
        for index, (name, unit) in enumerate(units)
    ]
    device = next(qmodel.parameters()).device
    try:
        with torch.no_grad():
            qmodel(*(v.to(device) for v in calib.batch(slice(None))))
    finally:
        for handle in handles:
            handle.remove()
