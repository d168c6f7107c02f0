"""Block-error curves of the 5G NR MCS table over AWGN with this project's LDPC link, cached in the package.

    python bench/semcom_bler.py [--codewords 300] [--step 0.5] [--workers 2]

For every MCS of qgesco.semcom.link.MCS_TABLE (1200-bit codewords, CRC-24 counted, 20 decoder iterations)
it measures the codeword error rate on a 0.5 dB grid, from where every codeword fails (at least 1 dB
measured down from 1.5 dB above the Shannon SNR) up to two points in a row without an error, and writes
qgesco/assets/semcom_bler_awgn.json (the table qgesco.semcom.mcs reads: 1 below the measured range and 0
above it) and bench/results/semcom_bler.{json,md}. Noise seeded per (MCS, SNR): bit-for-bit repeatable.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time

import numpy as np
import torch
from common import RESULTS, machine

from qgesco.fileio import write_json, write_text
from qgesco.semcom.bler import TABLE_PATH
from qgesco.semcom.link import CODEWORD_BITS, CRC_BITS, MCS_TABLE, DigitalLink
from qgesco.semcom.mcs import shannon_snr


def measure(name: str, snr: float, codewords: int) -> float:
    link = DigitalLink(name)
    payload = np.random.default_rng(0).integers(0, 256, codewords * link.payload_bits // 8, dtype=np.uint8)
    seed = int(np.random.SeedSequence([int(name[3:]), int(round(snr * 100)) + 10_000]).generate_state(1)[0])
    d = link.send(payload.tobytes(), snr, torch.Generator().manual_seed(seed))
    return d.codeword_errors / d.codewords


def curve(name: str, codewords: int, step: float) -> dict[float, float]:
    """One MCS's waterfall: from near its Shannon SNR down to where every codeword fails, up to two clean points."""
    torch.set_num_threads(1)  # the decoder's many small ops: one thread per process is fastest
    snr = math.floor((shannon_snr(name) + 1.5) / step) * step  # LDPC at 1200 bits: ~1.5-3 dB from Shannon
    points = {snr: measure(name, snr, codewords)}
    while points[min(points)] < 1.0:
        snr = min(points) - step
        points[snr] = measure(name, snr, codewords)
    snr, clean = max(points), 0
    while clean < 2:
        snr += step
        points[snr] = measure(name, snr, codewords)
        clean = clean + 1 if points[snr] == 0 else 0
    print(name, " ".join(f"{p:g}:{b:.2f}" for p, b in sorted(points.items())), flush=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codewords", type=int, default=300)
    parser.add_argument("--step", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=1, help="processes, one MCS each at a time (same numbers)")
    args = parser.parse_args()
    started = time.perf_counter()
    names = [f"mcs{i}" for i in range(len(MCS_TABLE))]
    jobs = [(n, args.codewords, args.step) for n in names]
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            curves = dict(zip(names, pool.starmap(curve, jobs)))
    else:
        curves = {n: curve(*job) for n, job in zip(names, jobs)}
    lo, hi = min(min(c) for c in curves.values()), max(max(c) for c in curves.values())
    grid = [round(lo + k * args.step, 3) for k in range(int(round((hi - lo) / args.step)) + 1)]
    bler = {n: [c.get(p, 1.0 if p < min(c) else 0.0) for p in grid] for n, c in curves.items()}
    seconds = round(time.perf_counter() - started, 1)
    write_json(
        TABLE_PATH,
        {
            "what": "codeword error rate over AWGN per 5G NR MCS (TS 38.214 Table 5.1.3.1-2), qgesco DigitalLink",
            "command": f"python bench/semcom_bler.py --codewords {args.codewords} --step {args.step:g}",
            "codeword_bits": CODEWORD_BITS,
            "crc_bits": CRC_BITS,
            "codewords_per_point": args.codewords,
            "snr_db": grid,
            "bler": bler,
        },
    )
    rows = ["| MCS | bits/symbol | code rate | payload bit per real use | Shannon SNR dB | SNR for BLER <= 10 % dB |"]
    rows.append("|---|---|---|---|---|---|")
    for i, (bits, rate) in enumerate(MCS_TABLE):
        name, link = f"mcs{i}", DigitalLink(f"mcs{i}")
        ok = min(
            p
            for p, b in curves[name].items()
            if b <= 0.1 and all(curves[name][q] <= 0.1 for q in curves[name] if q > p)
        )
        rows.append(
            f"| {name} | {bits} | {rate / 1024:.3f} | {link.payload_bits / link.uses_per_codeword:.3f} | "
            f"{shannon_snr(name):.1f} | {ok:g} |"
        )
    table = "\n".join(rows) + "\n"
    print(table)
    write_json(
        RESULTS / "semcom_bler.json",
        {
            "machine": machine(),
            "curves": {n: sorted(c.items()) for n, c in curves.items()},
            "seconds": seconds,
            "workers": args.workers,
        },
    )
    write_text(RESULTS / "semcom_bler.md", f"5G NR MCS over AWGN (bench/semcom_bler.py, {seconds:g} s)\n\n" + table)


if __name__ == "__main__":
    main()
