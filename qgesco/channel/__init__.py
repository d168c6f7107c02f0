"""The semantic-map link: sender encoding, presence compression, noisy channel, receiver cleanup.

``y = encode(labels, C, instance)`` builds the model's conditioning map;
``transmit(y, AWGN(10), C, generator=g)`` returns it as the receiver's model sees it
after the channel; ``save_received`` / ``load_received`` carry received maps from a transmitter to
a separate receiver. The pieces are public for training, calibration and evaluation, and this
package depends on torch, numpy, PIL and the file helpers only (never on models or diffusion).
"""

from .budget import Bandwidth, bandwidth, jpeg_bits, png_bits
from .filters import CLEANUPS, cleanup
from .frontend import send, transmit
from .noise import (
    AWGN,
    CHANNELS,
    GESCO_SIGMA,
    GESCO_TRAINING_PSNRS,
    GESCO_TRAINING_SIGMAS,
    NOISE_TABLES,
    Channel,
    Rayleigh,
    make_channel,
    noise_sigma,
)
from .onehot import check_y, class_indices, encode, instance_edges
from .palette import CAMVID_PALETTE, CITYSCAPES_PALETTE, class_palette, colorize
from .presence import Compressed, compress, decompress
from .received import load_received, save_received

__all__ = [
    "AWGN",
    "Bandwidth",
    "CAMVID_PALETTE",
    "CHANNELS",
    "CITYSCAPES_PALETTE",
    "CLEANUPS",
    "Channel",
    "Compressed",
    "GESCO_SIGMA",
    "GESCO_TRAINING_PSNRS",
    "GESCO_TRAINING_SIGMAS",
    "NOISE_TABLES",
    "Rayleigh",
    "bandwidth",
    "check_y",
    "class_indices",
    "class_palette",
    "cleanup",
    "colorize",
    "compress",
    "decompress",
    "encode",
    "instance_edges",
    "load_received",
    "jpeg_bits",
    "make_channel",
    "noise_sigma",
    "png_bits",
    "save_received",
    "send",
    "transmit",
]
