"""Training throughput (samples/s) of one configuration under CPU speed settings: torch
threads, contiguous vs channels_last, eager vs ``torch.compile``. Each variant runs real
training steps of ``qgesco train`` (data, channel, loss, backward, AdamW, EMA) in a scratch
folder; the first steps are warm-up and are not timed. Decides the demo recipe's settings."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch
from common import markdown_table, save

from qgesco.train.config import load_config
from qgesco.train.loop import Trainer


def measure(config: str, threads: int, channels_last: bool, compile_: bool, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(
            config,
            {
                "out": out,
                "threads": threads,
                "channels_last": channels_last,
                "steps": steps + warmup,
                "save_every": 10**9,
                "sample_every": 0,
            },
        )
        trainer = Trainer(cfg, log=lambda _: None)
        if compile_:
            trainer.net = torch.compile(trainer.net)
        times = []
        for i, batch in enumerate(trainer.batches()):
            if i == steps + warmup:
                break
            t0 = time.perf_counter()
            trainer.train_step(batch)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {
        "threads": threads,
        "layout": "channels_last" if channels_last else "contiguous",
        "mode": "compile" if compile_ else "eager",
        "s_per_step": round(s, 3),
        "samples_per_s": round(cfg.batch_size / s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/camvid-demo.yaml")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--compile", action="store_true", help="also time torch.compile (minutes of compilation per variant)"
    )
    args = ap.parse_args()
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for cl in (False, True):
            for comp in (False, True) if args.compile else (False,):
                try:
                    row = measure(args.config, threads, cl, comp, args.steps, args.warmup)
                except Exception as e:  # compile needs a working C++ toolchain; report, don't die
                    print(
                        f"threads {threads} channels_last {cl} compile {comp}: failed ({type(e).__name__}: "
                        f"{str(e)[:160]})",
                        file=sys.stderr,
                    )
                    continue
                rows.append(row)
                print(row, flush=True)
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup"] = round(r["samples_per_s"] / base, 2)
    table = markdown_table(rows, ["threads", "layout", "mode", "s_per_step", "samples_per_s", "speedup"])
    name = "train_speed_" + args.config.rsplit("/", 1)[-1].removesuffix(".yaml")
    save(
        name,
        {"rows": rows, "config": args.config, "steps": args.steps, "warmup": args.warmup},
        table,
        "python bench/train_speed.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
