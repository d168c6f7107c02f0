"""Where the digital schemes' cliff lies: codeword error rate of the 5G LDPC + QAM link over AWGN by PSNR.

    python bench/semcom_link.py [--mcs qpsk-1/2,16qam-1/2] [--snr -2,-1,0,1,2,3,4,5,6,8,10] [--codewords 60]

Random payloads, noise seeded per PSNR; writes bench/results/semcom_link.{json,md}. The PSNR is the
analog map's (sigma = 10^(-PSNR/20) per real use, average symbol power 1 per real use), as in
``qgesco compare``: for QPSK rate 1/2 it equals Eb/N0.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import RESULTS, machine

from qgesco.fileio import write_json, write_text
from qgesco.semcom import DigitalLink, capacity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcs", default="qpsk-1/2,16qam-1/2")
    parser.add_argument("--snr", default="-2,-1,0,1,2,3,4,5,6,8,10")
    parser.add_argument("--codewords", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the decoder's many small ops: one thread is fastest on a shared machine
    snrs = [float(v) for v in args.snr.split(",")]
    rows, started = [], time.perf_counter()
    for mcs in args.mcs.split(","):
        link = DigitalLink(mcs)
        payload = (
            np.random.default_rng(0).integers(0, 256, args.codewords * link.payload_bits // 8, dtype=np.uint8).tobytes()
        )
        for p in snrs:
            d = link.send(payload, p, torch.Generator().manual_seed(int(p * 100) + 10_000))
            rows.append(
                {
                    "mcs": mcs,
                    "psnr_db": p,
                    "codeword_error_rate": d.codeword_errors / d.codewords,
                    "codewords": d.codewords,
                    "bits_per_real_use": link.payload_bits / link.uses_per_codeword,
                    "capacity": capacity(p),
                }
            )
    lines = [
        "| code/modulation | bit per real use | " + " | ".join(f"{p:g} dB" for p in snrs) + " |",
        "|---|---|" + "---|" * len(snrs),
    ]
    for mcs in args.mcs.split(","):
        mine = [r for r in rows if r["mcs"] == mcs]
        lines.append(
            f"| {mcs} | {mine[0]['bits_per_real_use']:g} | "
            + " | ".join(f"{r['codeword_error_rate']:.2f}" for r in mine)
            + " |"
        )
    lines.append("| capacity (bit per real use) | – | " + " | ".join(f"{capacity(p):.2f}" for p in snrs) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    write_json(
        RESULTS / "semcom_link.json",
        {
            "machine": machine(),
            "rows": rows,
            "codewords": args.codewords,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    write_text(RESULTS / "semcom_link.md", "Codeword error rate over AWGN by PSNR (bench/semcom_link.py)\n\n" + table)


if __name__ == "__main__":
    main()
