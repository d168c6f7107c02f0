"""Image-quality and segmentation metrics for regenerated images: LPIPS, FID/KID, PSNR/SSIM/MS-SSIM, mIoU,
and a small CamVid segmentation network (:mod:`qgesco.metrics.segnet`) for semantic fidelity.

Images are float RGB tensors in [0, 1]. LPIPS and Inception weights come from the cache filled
by ``qgesco fetch-weights`` (:mod:`qgesco.metrics.weights`), the segmentation network's ship in
``qgesco/assets``; nothing here downloads at run time.
This package depends on torch, numpy, scipy, PIL and :mod:`qgesco.fileio` only, so that
evaluation never pulls in models, diffusion or data code.
"""

from qgesco.fileio import cache_dir
from qgesco.metrics.fid_kid import (
    InceptionFeatures,
    feature_stats,
    fid,
    fid_kid_folders,
    folder_features,
    frechet_distance,
    kid,
    tf_bilinear_resize,
)
from qgesco.metrics.images import list_images, load_image
from qgesco.metrics.perceptual import LPIPS, lpips
from qgesco.metrics.pixel import ms_ssim, psnr, ssim
from qgesco.metrics.segmentation import ConfusionMatrix, miou, pixel_accuracy
from qgesco.metrics.segnet import SegNet, segment
from qgesco.metrics.weights import FetchError, WeightsMissingError, fetch, fetch_all

__all__ = [
    "ConfusionMatrix",
    "FetchError",
    "InceptionFeatures",
    "LPIPS",
    "SegNet",
    "WeightsMissingError",
    "cache_dir",
    "feature_stats",
    "fetch",
    "fetch_all",
    "fid",
    "fid_kid_folders",
    "folder_features",
    "frechet_distance",
    "kid",
    "list_images",
    "load_image",
    "lpips",
    "miou",
    "ms_ssim",
    "pixel_accuracy",
    "psnr",
    "segment",
    "ssim",
    "tf_bilinear_resize",
]
