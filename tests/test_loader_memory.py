"""Loaders hold one copy of the weights: loading a ~170 MB model peaks at <= 1.1x its file above
the process baseline (fp32 safetensors, a published-style ``.pt``, a quantized file). Each load
runs in a fresh process, whose peak RSS (``VmHWM``) is read after it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from qgesco.models.checkpoint import create_model, save_model
from qgesco.models.config import config_from_official_flags
from qgesco.models.presets import GESCO_CITYSCAPES_FLAGS
from qgesco.quant import QuantConfig, quantize, save_quantized

#: Allocator and first-call slack (MB) beyond the 1.1x: lazily imported modules, thread pools.
SLACK_MB = 40

LOAD = """
import json, sys, torch
from pathlib import Path
from qgesco.api import load_model
from qgesco.runtime import load_runtime
def rss(key):
    lines = Path('/proc/self/status').read_text().splitlines()
    return next(int(l.split()[1]) for l in lines if l.startswith(key)) / 1024
kind, path, flags = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if 'image_hw' in flags: flags['image_hw'] = tuple(flags['image_hw'])
base = rss('VmRSS:')
model = load_runtime(path, backend='weight-only') if kind == 'quantized' else load_model(path, **flags)
held = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
print(json.dumps({'peak_mb': rss('VmHWM:') - base, 'held_mb': held}))
"""


def peak_above_baseline(kind: str, path, flags: dict | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, kind, str(path), json.dumps(flags or {})],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """gesco-cityscapes-256 at a quarter of the width: 42M parameters, a 169 MB fp32 file."""
    flags = {**GESCO_CITYSCAPES_FLAGS, "num_channels": 64, "image_hw": [64, 128]}
    cfg = config_from_official_flags(**{**flags, "image_hw": (64, 128)})
    model = create_model(cfg, seed=0).eval()
    tmp = tmp_path_factory.mktemp("big")
    save_model(model, tmp / "fp32.safetensors")
    save_quantized(
        quantize(model, None, QuantConfig(weight_bits=8, iters=0, weight_init="minmax")), tmp / "w8.safetensors"
    )
    return model, tmp, flags


def test_fp32_and_quantized_loaders_hold_one_copy(big):
    model, tmp, _ = big
    for kind, name in (("fp32", "fp32.safetensors"), ("quantized", "w8.safetensors")):
        file_mb = (tmp / name).stat().st_size / 2**20
        assert file_mb > (100 if kind == "fp32" else 25)
        got = peak_above_baseline(kind, tmp / name)
        assert got["held_mb"] == pytest.approx(file_mb, rel=0.01)
        assert got["peak_mb"] <= 1.1 * file_mb + SLACK_MB, (kind, got, file_mb)


def test_published_pt_loader_holds_one_copy(big):
    model, tmp, flags = big
    torch.save({f"model.{k}": v for k, v in model.state_dict().items()}, tmp / "published.pt")
    file_mb = (tmp / "published.pt").stat().st_size / 2**20
    got = peak_above_baseline("pt", tmp / "published.pt", flags)
    assert got["peak_mb"] <= 1.1 * file_mb + SLACK_MB, (got, file_mb)
