"""Training: exact resume, DDP agreement, noise-aware conditioning, config validation, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from qgesco.channel import AWGN, encode, transmit
from qgesco.cli import main
from qgesco.fileio import load_tensors
from qgesco.models.checkpoint import load_float_model, save_model
from qgesco.train import Trainer, make_config, train
from qgesco.train.timesteps import LossSecondMomentSampler

REPO = Path(__file__).resolve().parents[1]
TINY = dict(model="cpu-test", data="synthetic:16", batch_size=4, log_every=1, sample_every=0, threads=1)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / "ckpt" / (run / "ckpt" / "latest").read_text().strip()
    tensors = {}
    for name in ("model", "ema"):
        t, _ = load_tensors(folder / f"{name}.safetensors")
        tensors.update({f"{name}.{k}": v for k, v in t.items()})
    return tensors


def test_resume_is_bit_identical(tmp_path):
    straight = tmp_path / "straight"
    train(make_config({**TINY, "out": str(straight), "steps": 4, "save_every": 4, "cfg_drop": 0.5}))
    split = tmp_path / "split"
    train(make_config({**TINY, "out": str(split), "steps": 2, "save_every": 2, "cfg_drop": 0.5}))
    summary = train(make_config({**TINY, "out": str(split), "steps": 4, "save_every": 2, "cfg_drop": 0.5}), resume=True)
    assert summary["step"] == 4
    a, b = final_weights(straight), final_weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    first = final_weights(tmp_path / "straight")
    assert any(
        not torch.equal(first[k], load_tensors(split / "ckpt" / "step_0000002" / "model.safetensors")[0][k[6:]])
        for k in first
        if k.startswith("model.") and first[k].dtype.is_floating_point
    )
    rows = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_resume_refuses_changed_dynamics(tmp_path):
    train(make_config({**TINY, "out": str(tmp_path), "steps": 1, "save_every": 1}))
    with pytest.raises(ValueError, match="lr"):
        Trainer(make_config({**TINY, "out": str(tmp_path), "steps": 2, "lr": 5e-4}), resume=True)
    with pytest.raises(ValueError, match="--resume"):
        Trainer(make_config({**TINY, "out": str(tmp_path), "steps": 2}))


def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "qgesco.cli",
        "train",
        "--config",
        str(REPO / "configs" / "cpu-test.yaml"),
        "--out",
        str(out),
        "--steps",
        "2",
        "--save-every",
        "2",
        "--threads",
        "1",
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    digests = summary["rank_param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] and summary["step"] == 2
    assert load_float_model(out / "ema.safetensors").config.num_classes == 12


def test_noise_aware_conditioning_and_guidance_dropout(tmp_path):
    trainer = Trainer(
        make_config({**TINY, "out": str(tmp_path / "run"), "noise": "levels", "noise_levels": [1.0], "cfg_drop": 0.3})
    )
    labels = torch.randint(0, 12, (400, 8, 8))
    y = encode(labels, 12)
    g = torch.Generator().manual_seed(0)
    received = trainer.condition(y, g)
    dropped = received.flatten(1).abs().sum(1) == 0
    assert abs(dropped.float().mean().item() - 0.3) < 0.06
    kept = ~dropped
    clean = transmit(y, AWGN(100, table="gesco"), 12, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(received[kept], clean[kept], atol=0.05)  # sigma 0.9 noise arrived
    trainer.train_config.noise, trainer.train_config.cfg_drop = "none", 0.0
    assert torch.equal(trainer.condition(y, g), clean)


def test_loss_second_moment_sampler_is_unbiased_and_prefers_high_loss():
    s = LossSecondMomentSampler(4, history=3)
    for _ in range(3):
        s.update(torch.arange(4), torch.tensor([1.0, 1.0, 1.0, 10.0]))
    t, w = s.sample(200_000, torch.Generator().manual_seed(0), torch.device("cpu"))
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert (t == 3).float().mean() > 0.7
    assert (w * losses[t]).mean().item() == pytest.approx(losses.mean().item(), rel=0.02)
    clone = LossSecondMomentSampler(4, history=3)
    clone.load_state_dict(s.state_dict())
    assert torch.equal(clone.weights(), s.weights())


def test_sample_grid_is_written(tmp_path):
    train(
        make_config(
            {
                **TINY,
                "out": str(tmp_path),
                "steps": 2,
                "save_every": 2,
                "sample_every": 2,
                "sample_batch": 3,
                "sample_respacing": "ddim4",
            }
        )
    )
    image = Image.open(tmp_path / "samples" / "step_0000002.png")
    assert image.size[0] > 3 * 2 * 16 and image.size[1] > 3 * 2 * 16
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "metrics.csv").read_text().startswith("step,")


def test_norm_groups_override_regroups_a_model_file_with_its_weights(tmp_path):
    start = load_float_model(REPO / "qgesco" / "assets" / "camvid_demo.safetensors")
    path = tmp_path / "start.safetensors"
    save_model(start, path)
    groups = 16 if start.config.norm_groups != 16 else 8
    trainer = Trainer(
        make_config(
            {
                **TINY,
                "model": str(path),
                "data": "synthetic:8:camvid",
                "norm_groups": groups,
                "out": str(tmp_path / "run"),
                "steps": 1,
            }
        )
    )
    assert trainer.model.config == start.config.replace(norm_groups=groups)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(), start.state_dict().values()))


@pytest.mark.parametrize(
    "yaml_text, override, message",
    [
        ("bogus_field: 1\n", [], "unknown config field"),
        ("lr: fast\n", [], "lr: expected float"),
        ("", ["--image-hw", "[17, 16]"], "multiples of 2"),
        ("", ["--data", "camvid:train", "--data-root", "/nonexistent/camvid"], "nonexistent"),
        ("", ["--noise", "loud"], "noise"),
        ("", ["--norm-groups", "7"], "norm_groups: 7 groups do not divide"),
        ("", ["--model", "camvid-demo", "--data", "synthetic:8:cityscapes"], "classes"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, capsys, yaml_text, override, message):
    config = tmp_path / "c.yaml"
    config.write_text("model: cpu-test\ndata: synthetic:8\nsteps: 1\nsample_every: 0\n" + yaml_text)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), *override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "ckpt").exists()


@pytest.mark.parametrize("workers, stop", [(0, "process"), (2, "group")])
def test_sigterm_leaves_a_complete_checkpoint(tmp_path, workers, stop):
    """SIGTERM to the trainer, or to its whole process group as Ctrl-C and `timeout` do (data-loader
    workers included), ends with a final checkpoint and exit status 0."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "qgesco.cli",
        "train",
        "--config",
        str(REPO / "configs" / "cpu-test.yaml"),
        "--out",
        str(out),
        "--steps",
        "100000",
        "--save-every",
        "100000",
        "--log-every",
        "1",
        "--threads",
        "1",
        "--num-workers",
        str(workers),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
        assert time.time() < deadline and proc.poll() is None, "training did not start"
        time.sleep(0.2)
    if stop == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    step = int((out / "ckpt" / "latest").read_text().strip().split("_")[1])
    assert 1 <= step < 100000 and "stopped at step" in err + _
    assert load_float_model(out / "ema.safetensors").config.num_classes == 12
    assert not list(out.rglob("*.tmp"))
