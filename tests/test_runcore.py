"""The run core evaluate and semcom share: one seeding scheme and one per-image scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qgesco import runcore


def test_every_stream_and_key_draws_its_own_numbers_whatever_else_is_drawn():
    seeds = {runcore.stream_seed(0, stream, 4, runcore.psnr_key(p)) for stream in (1, 2) for p in (10.0, 20.0)}
    assert len(seeds) == 4  # 10 and 20 dB differ only in their high bits: still separate streams
    assert runcore.stream_seed(0, 1, 4) == runcore.stream_seed(0, 1, 4) != runcore.stream_seed(1, 1, 4)
    a = torch.randn(3, generator=runcore.generator(0, 2, 7))
    torch.randn(5, generator=runcore.generator(0, 2, 8))  # another image's draws in between change nothing
    assert torch.equal(a, torch.randn(3, generator=runcore.generator(0, 2, 7)))
    entropy = runcore.seed_sequence(0, 2, 7)
    assert runcore.stream_seed(0, 2, 7) == int(entropy.generate_state(1, np.uint64)[0])
    assert runcore.psnr_label(10.0) == "10" and runcore.psnr_label(2.5) == "2.5"


def test_scores_are_per_image_and_the_confusion_counts_the_dataset_classes():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=g)
    refs = images.clone()
    refs[1] = torch.rand(3, 32, 32, generator=g)
    labels = torch.randint(0, 12, (3, 32, 32), generator=g)
    records = runcore.score_images(images, refs, labels, 12, ("psnr", "ssim", "confusion"))
    assert [set(r) for r in records] == [{"psnr", "ssim", "confusion"}] * 3
    assert records[0]["psnr"] == runcore.PSNR_CAP_DB and records[1]["psnr"] < 20  # identical images: capped
    assert all(r["confusion"].shape == (12, 12) and r["confusion"].sum() == 32 * 32 for r in records)
    alone = runcore.score_images(images[1:2], refs[1:2], labels[1:2], 12, ("psnr", "ssim", "confusion"))[0]
    assert alone["psnr"] == pytest.approx(records[1]["psnr"]) and np.array_equal(
        alone["confusion"], records[1]["confusion"]
    )
    with pytest.raises(ValueError, match="outside"):  # labels beyond the dataset's classes are refused
        runcore.score_images(images, refs, labels, 5, ("confusion",))
    with pytest.raises(ValueError, match=r"unknown scores \['fid'\]"):
        runcore.score_images(images, refs, labels, 12, ("fid",))
