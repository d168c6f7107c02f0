"""The low-bit receiver on this machine: sizes, FLOPs, bit-ops, guided-step latency and peak RSS
per runtime mode; the same run as ``qgesco bench`` (the logic lives in ``qgesco.runtime.bench``).

    .venv/bin/python bench/receiver.py                                  # camvid-demo, seeded random weights
    .venv/bin/python bench/receiver.py --model qgesco/assets/camvid_demo.safetensors
    .venv/bin/python bench/receiver.py --model gesco-cityscapes-256     # analytic only
"""

from __future__ import annotations

import argparse
import sys

from common import RESULTS

from qgesco.runtime.bench import add_arguments, bench, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    args = ap.parse_args()
    name, result, text = bench(args)
    save(RESULTS, name, result, text, "python bench/receiver.py " + " ".join(sys.argv[1:]))
    print(text)


if __name__ == "__main__":
    main()
