"""Semantic vs digital transmission at equal channel uses: does regenerating from the map win?

:mod:`~qgesco.semcom.link` carries bytes over a 5G NR LDPC code and QAM (Sionna), on AWGN or Rayleigh fading;
:mod:`~qgesco.semcom.codec` makes cheaper maps and photos (downsampling, deflate, JPEG, WebP, JPEG 2000, HEVC, AVIF);
:mod:`~qgesco.semcom.jscc` is the learned baseline, DeepJSCC, trained by :mod:`~qgesco.semcom.jscc_train`;
:mod:`~qgesco.semcom.schemes` holds the schemes and their channel-use accounting;
:func:`compare` runs them on a dataset split (:class:`CompareSettings`) and scores the images (docs/semcom.md).
"""

from .link import DEFAULT_MCS, DigitalLink, capacity, mcs_names
from .runner import compare
from .schemes import SCHEMES, AnalogMap, DigitalImage, DigitalMap, IdealImage, IdealMap, make_schemes
from .settings import CompareSettings

__all__ = [
    "DEFAULT_MCS",
    "SCHEMES",
    "AnalogMap",
    "CompareSettings",
    "DigitalImage",
    "DigitalLink",
    "DigitalMap",
    "IdealImage",
    "IdealMap",
    "capacity",
    "compare",
    "make_schemes",
    "mcs_names",
]
