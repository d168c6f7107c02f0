"""Guided-step latency of the demo model with cores held by other processes, per thread setting.

Each row runs in a fresh process (the OpenMP wait policy is read once, when torch loads): torch's
default thread count (one per core), one thread, and as many threads as cores other processes left
idle during a 0.15 s sample of /proc/stat ("free"), each with the default and the passive OpenMP
wait policy, once on the machine as it is and once with a ``yes > /dev/null`` competitor per
``--busy`` core. The ratio busy/as-is is the slowdown a user sees when another job starts. This is
what chose the CLI's setting (qgesco.runtime.threads). Writes results/threads_under_load.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from common import markdown_table, save

CHILD = """
import json, os, statistics, sys, time
import torch
from qgesco.models.checkpoint import load_float_model
from qgesco.runtime.timing import measure_step
mode, reps = sys.argv[1], int(sys.argv[2])
def ticks():
    rows = [line.split() for line in open("/proc/stat") if line.startswith("cpu") and line[3].isdigit()]
    return [(sum(map(int, r[1:9])) - int(r[4]) - int(r[5]), sum(map(int, r[1:9]))) for r in rows]
if mode == "free":
    a = ticks(); time.sleep(0.15); b = ticks()
    free = sum((b1 - a1) / max(t1 - t0, 1) < 0.2 for (a1, t0), (b1, t1) in zip(a, b))
    torch.set_num_threads(max(1, free))
elif mode != "default":
    torch.set_num_threads(int(mode))
model = load_float_model("camvid-demo")
times = measure_step(model, model.config, reps, 1)
print(json.dumps({"threads": torch.get_num_threads(), "step_ms": statistics.median(times)}))
"""


def run(mode: str, policy: str, reps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(reps)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=3, help="timed guided steps per row (median)")
    p.add_argument("--busy", type=int, default=1, help="cores to keep busy in the loaded rows")
    args = p.parse_args()
    rows = []
    for load in ("as is", f"{args.busy} core(s) busy"):
        hogs = (
            [] if load == "as is" else [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(args.busy)]
        )
        try:
            for mode in ("default", "1", "free"):
                for policy in ("default", "PASSIVE"):
                    with open("/proc/loadavg") as f:
                        loadavg = f.read().split()[0]
                    r = run(mode, policy, args.reps)
                    rows.append({"load": load, "asked": mode, "wait policy": policy, "loadavg": loadavg, **r})
                    print(rows[-1], flush=True)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    base = {(r["asked"], r["wait policy"]): r["step_ms"] for r in rows if r["load"] == "as is"}
    for r in rows:
        r["step_ms"] = round(r["step_ms"], 1)
        r["vs as is"] = round(r["step_ms"] / base[(r["asked"], r["wait policy"])], 2)
    table = markdown_table(rows, ["load", "asked", "wait policy", "loadavg", "threads", "step_ms", "vs as is"])
    command = f"python bench/threads_under_load.py --reps {args.reps} --busy {args.busy}"
    save("threads_under_load", {"rows": rows}, table, command)


if __name__ == "__main__":
    main()
