"""``quantize(model, calib, QuantConfig(...))``: the one call that turns a float GESCO UNet
into a calibrated fake-quantized one (a deep copy; the original stays untouched)."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .. import validate
from ..models.unet import UNetModel
from .calibration import CalibrationSet
from .digest import fingerprint, weights_sha256
from .reconstruct import ResumeStore, reconstruct
from .settings import QuantConfig
from .swap import QuantPlan, act_quantizers, apply_plan, make_plan, quant_layers


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _calibration(calib: CalibrationSet | str | os.PathLike | None, model: UNetModel, config: QuantConfig):
    if calib is None:
        if config.act_bits is not None:
            raise ValueError(
                f"act_bits={config.act_bits} needs a calibration set: activation ranges are measured on it; "
                "build one with `qgesco calibrate` or build_calibration_set()"
            )
        if config.iters:
            raise ValueError(
                f"iters={config.iters} (AdaRound) needs a calibration set; pass one, or QuantConfig(iters=0) for "
                "data-free nearest rounding"
            )
        return None
    if not isinstance(calib, (CalibrationSet, str, os.PathLike)):
        raise ValueError(
            f"calib must be a CalibrationSet (qgesco.build_calibration_set) or the path of one, "
            f"got {type(calib).__name__}"
        )
    if not isinstance(calib, CalibrationSet):
        calib = CalibrationSet.load(calib)
    calib.check_model(model.config)
    return calib


def quantize(
    model: UNetModel,
    calib: CalibrationSet | str | os.PathLike | None = None,
    config: QuantConfig | None = None,
    resume: str | os.PathLike | None = None,
) -> UNetModel:
    """A quantized copy of ``model``: every Conv/Linear (SPADE convs included) swapped for a
    :class:`~qgesco.quant.layers.QuantLayer` with per-output-channel ``config.weight_bits`` weights.

    ``config`` (:class:`~qgesco.quant.settings.QuantConfig`, default ``QuantConfig()``) says what and how:

    - ``weight_init``: ``"lp"`` searches each channel's clipping range minimising the
      ``lp_norm`` error, ``"minmax"`` takes the full range; ``symmetric`` fixes zero points at 0.
    - ``act_bits``: per-tensor activation quantizers on every layer input (and, with
      ``quantize_attention``, on q, k, v and the softmax output), ranges from ``calib``.
    - ``split``: decoder layers reading ``cat(h, skip)`` get separate scales per part.
    - ``keep_fp``: glob patterns / module prefixes of layers left in float (default none).
    - ``iters``: AdaRound iterations per block on ``calib`` (0: nearest rounding; without a
      calibration set only 0 is possible). The other knobs are BRECQ's. With a calibration
      set every block's error is measured and reported, whatever ``iters``.

    ``resume``: a folder where every finished block is saved; rerunning with the same
    arguments continues after the last finished block.

    The result computes in fp32 from its integer weights; its ``quant_report`` holds the
    settings, the float weights' digest (``model_sha256``: which model this is a copy of,
    whatever its file or bundled name), the calibration set's summary, every block's errors
    and the wall time (``seconds``; a resumed run adds the blocks finished by earlier runs,
    which it marks ``resumed``, so the figure is the calibration's cost, not the last run's).
    """
    if not isinstance(model, UNetModel):
        raise ValueError(f"quantize takes a qgesco UNetModel, got {type(model).__name__}")
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise ValueError(f"config must be a QuantConfig (qgesco.quant.QuantConfig), got {type(config).__name__}")
    if model.quant_plan is not None or any(True for _ in quant_layers(model)):
        raise ValueError("the model is already quantized; quantize the full-precision model it was made from")
    validate.finite_weights("the model", model)
    calib = _calibration(calib, model, config)
    progress = sys.stderr.isatty()  # bars for a person watching, none in logs and tests
    started = time.perf_counter()
    fp_model = model if model.dtype == torch.float32 else copy.deepcopy(model).float()
    model_sha256 = weights_sha256(fp_model)
    with _eval_mode(fp_model):
        plan = make_plan(fp_model, **config.plan_options())
        qmodel = copy.deepcopy(fp_model).eval().requires_grad_(False)
        apply_plan(qmodel, plan, fit=True, method=config.weight_init, p=config.lp_norm, progress=progress)
        options = config.report_options()
        blocks = []
        if calib is not None:
            store = None
            if resume is not None:
                run_id = fingerprint(
                    {"plan": plan, "options": options, "model": model_sha256, "calibration": calib.digest()}
                )
                store = ResumeStore(Path(resume), run_id)
            blocks = reconstruct(qmodel, fp_model, calib, plan, config, store, progress)
            diverged = [b["block"] for b in blocks if not math.isfinite(b["error"])]
            if diverged:
                raise ValueError(
                    f"calibration error is NaN/inf in block(s) {diverged[:3]}: the calibration set or the "
                    "model holds extreme values; re-create the calibration set (qgesco calibrate)"
                )
    for _, layer in quant_layers(qmodel):
        layer.finish()
    for _, quantizer in act_quantizers(qmodel):
        quantizer.enabled = True
    qmodel.quant_plan = plan
    qmodel.quant_report = _report(plan, options, model_sha256, calib, blocks, time.perf_counter() - started)
    return qmodel


def _report(
    plan: QuantPlan,
    options: dict[str, Any],
    model_sha256: str,
    calib: CalibrationSet | None,
    blocks: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    learned = [b for b in blocks if b["rounding"] == "learned"]
    return {
        "weight_bits": plan["weight_bits"],
        "act_bits": plan["act_bits"],
        "symmetric": plan["symmetric"],
        **options,
        "model_sha256": model_sha256,
        "calibration": calib.summary() if calib is not None else None,
        "blocks": blocks,
        "blocks_with_learned_rounding": len(learned),
        "seconds": round(seconds + sum(b["seconds"] for b in blocks if b.get("resumed")), 1),
        "torch": torch.__version__,
    }
