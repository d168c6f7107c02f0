"""qgesco.metrics.segnet: the bundled CamVid weights load, segment real val images about as well
as measured at training time, do far worse on images without street structure, and refuse bad
input and bad weight files with one clear error."""

from __future__ import annotations

import pytest
import torch

from qgesco.channel import colorize
from qgesco.data import CAMVID_CLASSES, open_dataset
from qgesco.fileio import save_tensors
from qgesco.metrics import ConfusionMatrix, SegNet, segment, segnet

#: Measured with the bundled weights on the first 16 CamVid val images at 48x64, 12 classes
#: (torch 2.13 CPU): mIoU 0.5174, pixel accuracy 0.8894. The test asserts these minus MARGIN,
#: room for other CPUs' and torch builds' rounding, well below what a broken model scores.
#: (Shuffled pixels score mIoU 0.036, the palette image 0.053.)
MIOU_16, PIXEL_ACCURACY_16 = 0.517, 0.889
MARGIN = 0.02


@pytest.fixture(scope="module")
def val16(camvid_dir):
    ds = open_dataset("camvid:val", image_hw=segnet.TRAIN_HW, root=camvid_dir)
    items = [ds[i] for i in range(16)]
    return (torch.stack([s.image for s in items]) + 1) / 2, torch.stack([s.label for s in items])


def _scores(images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    cm = ConfusionMatrix(12).update(segment(images), labels)
    return cm.miou(), cm.pixel_accuracy()


def test_bundled_weights_load_with_their_provenance():
    assert segnet.WEIGHTS.stat().st_size <= 2_000_000
    model = SegNet.pretrained()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert tuple(model.meta["classes"]) == CAMVID_CLASSES
    assert tuple(model.meta["train_hw"]) == segnet.TRAIN_HW == (48, 64)
    assert model.meta["val"]["miou"] > 0.4 and model.meta["val"]["pixel_accuracy"] > 0.8
    assert model.meta["recipe"]["command"].startswith("python bench/train_segnet.py")


def test_segment_gives_labels_at_any_size():
    g = torch.Generator().manual_seed(0)
    for shape in ((2, 3, 48, 64), (1, 3, 96, 128), (3, 30, 40)):
        labels = segment(torch.rand(shape, generator=g))
        assert labels.dtype == torch.int64
        assert labels.shape == (shape[0] if len(shape) == 4 else 1, *shape[-2:])
        assert 0 <= int(labels.min()) and int(labels.max()) <= 11
    # Eval mode: a pixel's label does not depend on the rest of the batch (BatchNorm in training
    # mode would change most of them); float64 input runs a float64 copy. Equal up to near-ties.
    x = torch.rand(4, 3, 48, 64, generator=g)
    assert (segment(x)[1:3] == segment(x[1:3])).float().mean() > 0.999
    assert (segment(x.double()) == segment(x)).float().mean() > 0.999
    assert segnet._pretrained("cpu", torch.float32) is segnet._pretrained("cpu", torch.float32)


def test_real_val_images_score_as_measured_and_structure_matters(val16):
    images, labels = val16
    miou, acc = _scores(images, labels)
    assert miou >= MIOU_16 - MARGIN and acc >= PIXEL_ACCURACY_16 - MARGIN
    # The same pixels in random places, and the label map painted in its palette colours, carry
    # no street scene: segmenting them must be far worse, else the network reads colour alone.
    g = torch.Generator().manual_seed(0)
    flat = images.flatten(2)
    shuffled = flat[:, :, torch.randperm(flat.shape[-1], generator=g)].view_as(images)
    painted = colorize(labels, 12).permute(0, 3, 1, 2).float() / 255
    for name, fake in (("shuffled pixels", shuffled), ("palette image", painted)):
        fake_miou, _ = _scores(fake, labels)
        assert fake_miou < miou / 2, f"{name}: mIoU {fake_miou:.3f} vs real {miou:.3f}"


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.zeros(1, 3, 48, 64, dtype=torch.uint8), "divide uint8 images by 255"),
        (torch.rand(1, 1, 48, 64), r"expected shape \(N, 3, H, W\)"),
        (torch.rand(1, 3, 48, 64) * 2 - 1, r"\(x \+ 1\) / 2"),
    ],
)
def test_bad_input_is_refused(images, match):
    with pytest.raises(ValueError, match=match):
        segment(images)


def test_missing_or_unusable_weights_give_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(segnet, "WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="absent.safetensors.*bench/train_segnet.py"):
        SegNet.pretrained()
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    misfit = tmp_path / "misfit.safetensors"
    save_tensors(misfit, {"head.weight": torch.zeros(12, 8, 1, 1)}, {"kind": "segnet", "config": {"widths": [8, 16]}})
    for path in (garbage, misfit):
        with pytest.raises(ValueError, match="unusable segmentation weights.*bench/train_segnet.py"):
            SegNet.load(path)
