"""DeepJSCC's PSNR against SNR (the paper's curve) beside the photo codecs at the same channel uses, and the codecs'
bytes against quality, on CamVid val at 48x64.

    python bench/semcom_jscc.py [--images 101] [--snr -5,0,5,10,15,20,25,30] [--codec-images 8]

Three tables, PSNR on 8-bit images to the original photo, mean over images:
1. every bundled DeepJSCC model over AWGN and Rayleigh (one fade per image and SNR, seeded as ``qgesco compare``
   seeds it) at each SNR;
2. at each model's channel uses, the best photo of each codec that an ideal code at capacity carries at that SNR
   (``ideal-image``: the bound the paper compares DeepJSCC with, JPEG/JPEG 2000 at capacity), and what a real
   rate-1/2 QPSK code carries (``digital-image``: a fixed payload, lost below the code's threshold; here simply the
   photo that fits, and the SNR column at which bench/semcom_link.py measures the code failing says where it stops);
3. each codec's sent bytes and PSNR at qualities 10..90 at full resolution.
Writes bench/results/semcom_jscc.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction

import numpy as np
import torch
from common import markdown_table, save

from qgesco.data import open_dataset
from qgesco.runcore import psnr_key, stream_seed
from qgesco.semcom import DigitalLink, capacity
from qgesco.semcom.codec import CODECS, best_fit, decode_image, image_payload
from qgesco.semcom.runner import _CHANNEL  # the stream compare seeds its channel noise from
from qgesco.semcom.schemes import HEADER_BYTES_DIGITAL, DeepJSCCScheme
from qgesco.viz import images_to_uint8

HW = (48, 64)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).square().mean().item()
    return 10 * math.log10(255**2 / mse) if mse else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=101, help="CamVid val scenes for the DeepJSCC curve")
    parser.add_argument("--codec-images", type=int, default=8, help="scenes for the codec tables (x265 is slow)")
    parser.add_argument("--snr", default="-5,0,5,10,15,20,25,30")
    parser.add_argument("--codecs", default=",".join(CODECS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    snrs = [float(v) for v in args.snr.split(",")]
    codecs = args.codecs.split(",")
    dataset = open_dataset("camvid:val", image_hw=HW)
    photos = [torch.from_numpy(images_to_uint8(dataset[i].image[None])[0]).permute(2, 0, 1) for i in range(args.images)]
    schemes = {ch: DeepJSCCScheme(12, channel=ch) for ch in ("awgn", "rayleigh")}
    models = sorted((m.uses(HW), m, meta) for m, meta in schemes["awgn"].models)
    curve = []
    for uses, model, meta in models:
        for channel, scheme in schemes.items():
            row = {
                "channels": model.channels,
                "cpp": uses / (HW[0] * HW[1]),
                "k/n": str(Fraction(model.channels, 96)),
                "channel": channel,
                "train_s": meta["seconds"],
            }
            for p in snrs:
                values = []
                for i, photo in enumerate(photos):
                    plan = scheme.plan(None, photo, uses, p)
                    g = torch.Generator().manual_seed(stream_seed(0, _CHANNEL, i, psnr_key(p)))
                    values.append(_psnr(scheme.receive(plan, None, p, g).image, photo))
                row[f"{p:g} dB"] = round(float(np.mean(values)), 2)
            curve.append(row)
            print(row, file=sys.stderr)
    link = DigitalLink("qpsk-1/2")
    few = photos[: args.codec_images]
    at_uses = []
    for uses, model, _ in models:
        for codec in codecs:
            rooms = {f"{p:g} dB": math.floor(uses * capacity(p)) // 8 - HEADER_BYTES_DIGITAL for p in snrs}
            rooms["qpsk-1/2"] = link.max_bits(uses) // 8 - HEADER_BYTES_DIGITAL
            row = {"channels": model.channels, "cpp": uses / (HW[0] * HW[1]), "codec": codec}
            for column, room in rooms.items():
                values = []
                for photo in few:
                    fit = best_fit(photo, room, codec)
                    values.append(_psnr(decode_image(fit[2], HW, fit[0], fit[1], codec), photo) if fit else None)
                row[column] = "–" if None in values else round(float(np.mean(values)), 2)
            at_uses.append(row)
            print(row, file=sys.stderr)
    rate = []
    for codec in codecs:
        row = {"codec": codec}
        for q in (10, 30, 50, 70, 90):
            payloads = [image_payload(photo, 1, q, codec) for photo in few]
            psnr = np.mean([_psnr(decode_image(d, HW, 1, q, codec), x) for d, x in zip(payloads, few)])
            row[f"q{q}"] = f"{np.mean([len(d) for d in payloads]):.0f} B / {psnr:.2f} dB"
        rate.append(row)
    columns = [f"{p:g} dB" for p in snrs]
    table = (
        f"DeepJSCC PSNR (dB) vs SNR, CamVid val, first {args.images} scenes at 48x64\n\n"
        + markdown_table(curve, ["channels", "cpp", "k/n", "channel", "train_s", *columns])
        + f"\nBest photo at the same channel uses, ideal code at capacity per SNR and a real qpsk-1/2 code (PSNR dB, "
        f"first {len(few)} scenes; – : nothing fits)\n\n"
        + markdown_table(at_uses, ["channels", "cpp", "codec", *columns, "qpsk-1/2"])
        + f"\nSent bytes / PSNR at full resolution by quality (first {len(few)} scenes)\n\n"
        + markdown_table(rate, ["codec", "q10", "q30", "q50", "q70", "q90"])
    )
    command = "python " + " ".join(sys.argv)
    payload = {"curve": curve, "at_uses": at_uses, "rate": rate, "seconds": round(time.perf_counter() - started, 1)}
    save("semcom_jscc", payload, table, command)


if __name__ == "__main__":
    main()
