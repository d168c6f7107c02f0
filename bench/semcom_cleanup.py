"""The receiver's map cleanup against the sent map, by SNR: what fraction of pixels each cleanup returns exactly.

    python bench/semcom_cleanup.py [--snr -5,0,5,10,15,20,30,100] [--images 101]

CamVid val label maps at 48x64 through the analog map's path of ``qgesco compare`` (presence compression,
unit average power, AWGN seeded per image and SNR), then each cleanup of qgesco.channel.CLEANUPS. Per
pixel: "exact" if every plane the model gets is within 1/2 of the sent one-hot value (two planes above
1/2 fail), "decided" if the largest present plane is the sent class. Writes
bench/results/semcom_cleanup.{json,md}. No model, a few seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import RESULTS, machine

from qgesco.channel import CLEANUPS, compress, encode, make_channel, transmit
from qgesco.data import open_dataset
from qgesco.fileio import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snr", default="-5,0,5,10,15,20,30,100")
    parser.add_argument("--images", type=int, default=101)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    dataset = open_dataset("camvid:val", image_hw=(48, 64))
    labels = [dataset[i].label for i in range(min(args.images, len(dataset)))]
    snrs = [float(v) for v in args.snr.split(",")]
    rows = []
    for method in CLEANUPS:
        for p in snrs:
            exact, decided = [], []
            for i, label in enumerate(labels):
                y = encode(label[None], 12)
                present = compress(y, 12).presence
                gain_db = 10 * np.log10(int(present.sum()))
                g = torch.Generator().manual_seed(i * 1000 + int(p))
                got = transmit(y, make_channel("awgn", p + gain_db), 12, cleanup=method, generator=g)
                exact.append(float(((got - y).abs() < 0.5).all(1).float().mean()))
                scores = got.masked_fill(~present[:, :, None, None], float("-inf"))
                decided.append(float((scores.argmax(1) == label).float().mean()))
            rows.append(
                {"cleanup": method, "snr_db": p, "exact": float(np.mean(exact)), "decided": float(np.mean(decided))}
            )
    lines = ["| cleanup | " + " | ".join(f"{p:g} dB" for p in snrs) + " |", "|---|" + "---|" * len(snrs)]
    for method in CLEANUPS:
        mine = [r for r in rows if r["cleanup"] == method]
        lines.append(
            f"| {method} | " + " | ".join(f"{100 * r['exact']:.2f} / {100 * r['decided']:.2f}" for r in mine) + " |"
        )
    table = "% of pixels exact / decided right, by SNR (unit average power)\n\n" + "\n".join(lines) + "\n"
    print(table)
    seconds = round(time.perf_counter() - started, 1)
    write_json(
        RESULTS / "semcom_cleanup.json", {"machine": machine(), "images": len(labels), "rows": rows, "seconds": seconds}
    )
    write_text(
        RESULTS / "semcom_cleanup.md",
        f"Map cleanup vs the sent map (bench/semcom_cleanup.py, {len(labels)} CamVid val maps)\n\n" + table,
    )


if __name__ == "__main__":
    main()
