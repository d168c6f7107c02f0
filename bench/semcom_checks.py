"""Checks of the comparison's two shortcuts against direct simulation on a subset of scenes.

    python bench/semcom_checks.py --awgn runs/semcom --ldpc runs/semcom-ldpc --rayleigh runs/semcom-rayleigh \
        --receivers runs/semcom-w8

- ``--link table`` (each codeword's fate drawn from the cached BLER curves) against ``--link ldpc`` (every
  codeword decoded) on AWGN: the share of lost images per scheme, budget and SNR, over the same scenes.
- Rayleigh's expected quality from the AWGN grid against a direct Rayleigh run (LDPC decoded, one fade per
  scene and SNR): for the direct run's own fades, the LPIPS of the analog map and DeepJSCC interpolated from
  the AWGN grid at the fade's effective SNR against the LPIPS they got, and each digital payload's predicted
  loss probability (1 - BLER(effective SNR))^C against the losses that happened.

- Other receivers (the W8 model, another sampler) against the grid's on their runs' scenes: per-image
  LPIPS and pixel-accuracy differences, paired (the same maps and x_T).

Reads the runs' results.json; writes bench/results/semcom_checks.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import RESULTS

from qgesco.fileio import write_json, write_text
from qgesco.semcom.bler import bler
from qgesco.semcom.stats import Bootstrap, interpolation_weights

INTERPOLATED = ("analog-map", "deepjscc")  # the schemes whose Rayleigh rows the grid interpolates


def _records(run: str) -> tuple[dict, list[dict]]:
    result = json.loads((Path(run) / "results.json").read_text())
    return result["settings"], result["per_image"]


def link_check(awgn: str, ldpc: str) -> list[dict]:
    _, table_rows = _records(awgn)
    settings, ldpc_rows = _records(ldpc)
    scenes = set(settings["dataset_indices"])
    key = lambda r: (r["scheme"], r["budget"], r["snr"])  # noqa: E731
    out = []
    for k in sorted({key(r) for r in ldpc_rows if r["scheme"].startswith("digital")}):
        a = [r["failed"] for r in table_rows if key(r) == k and r["scene"] in scenes]
        b = [r["failed"] for r in ldpc_rows if key(r) == k]
        out.append({"scheme": k[0], "budget": k[1], "snr": k[2], "lost_table": np.mean(a), "lost_ldpc": np.mean(b)})
    return out


def fading_check(awgn: str, rayleigh: str) -> tuple[list[dict], dict]:
    s, grid_rows = _records(awgn)
    _, direct = _records(rayleigh)
    grid = s["snrs"]
    lpips = {(r["scheme"], r["budget"], r["snr"], r["scene"]): r["lpips"] for r in grid_rows}
    analog = []
    for scheme in [x for x in INTERPOLATED if any(r["scheme"] == x for r in direct)]:
        for budget in sorted({r["budget"] for r in direct}):
            for snr in sorted({r["snr"] for r in direct}):
                rows = [r for r in direct if r["scheme"] == scheme and r["budget"] == budget and r["snr"] == snr]
                eff = np.array([snr + 20 * np.log10(r["gain"]) for r in rows])
                w = interpolation_weights(grid, eff)
                predicted = np.array(
                    [w[j] @ [lpips[(scheme, budget, q, r["scene"])] for q in grid] for j, r in enumerate(rows)]
                )
                got = np.array([r["lpips"] for r in rows])
                diff = Bootstrap(len(rows)).mean_difference(predicted, got)
                analog.append(
                    {
                        "scheme": scheme,
                        "budget": budget,
                        "snr": snr,
                        "direct": got.mean(),
                        "interpolated": predicted.mean(),
                        "difference": diff,
                    }
                )
    coded = [r for r in direct if r["scheme"].startswith("digital") and r.get("mcs")]
    predicted = [1 - (1 - bler(r["mcs"], r["snr"] + 20 * np.log10(r["gain"]))) ** r["codewords"] for r in coded]
    digital = {
        "payloads": len(coded),
        "lost": float(np.mean([r["failed"] for r in coded])),
        "predicted": float(np.mean(predicted)),
    }
    return analog, digital


def receiver_check(awgn: str, w8: str) -> list[dict]:
    _, fp32 = _records(awgn)
    _, quantized = _records(w8)
    key = lambda r: (r["scheme"], r["budget"], r["snr"])  # noqa: E731
    base = {(*key(r), r["scene"]): r for r in fp32}
    out = []
    for k in sorted({key(r) for r in quantized}):
        rows = sorted((r for r in quantized if key(r) == k), key=lambda r: r["scene"])
        a = np.array([r["lpips"] for r in rows])
        b = np.array([base[(*k, r["scene"])]["lpips"] for r in rows])
        pa = np.array([r["pixel_accuracy"] for r in rows]) - [base[(*k, r["scene"])]["pixel_accuracy"] for r in rows]
        boot = Bootstrap(len(rows))
        out.append(
            {"scheme": k[0], "budget": k[1], "snr": k[2], "lpips_other": a.mean(), "lpips_grid": b.mean(),
             "difference": boot.mean_difference(a, b), "pixel_accuracy_difference": boot.mean(pa)}
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--awgn", required=True)
    parser.add_argument("--ldpc", required=True)
    parser.add_argument("--rayleigh", required=True)
    parser.add_argument("--receivers", required=True, help="comma-separated runs of other receivers")
    args = parser.parse_args()
    links = link_check(args.awgn, args.ldpc)
    analog, digital = fading_check(args.awgn, args.rayleigh)
    lines = [
        "## --link table vs --link ldpc (AWGN, % of images lost)",
        "",
        "| scheme | budget | SNR dB | table | ldpc |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['scheme']} | {r['budget']:g} | {r['snr']:g} | {100 * r['lost_table']:.0f} | {100 * r['lost_ldpc']:.0f} |"
        for r in links
    ]
    gap = max(abs(r["lost_table"] - r["lost_ldpc"]) for r in links)
    lines += [
        "",
        f"Largest gap: {100 * gap:.0f} points.",
        "",
        "## Rayleigh: analog schemes' LPIPS, interpolated from the AWGN grid vs direct",
        "",
    ]
    lines += [
        "| scheme | budget | SNR dB | direct | interpolated | interpolated − direct [95 %] |",
        "|---|---|---|---|---|---|",
    ]
    for r in analog:
        d = r["difference"]
        ci = f"{d['value']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
        lines.append(
            f"| {r['scheme']} | {r['budget']:g} | {r['snr']:g} | {r['direct']:.3f} | {r['interpolated']:.3f} | {ci} |"
        )
    lines += [
        "",
        f"Digital payloads under Rayleigh: {digital['payloads']}, lost {100 * digital['lost']:.1f} %, "
        f"predicted from the BLER curves {100 * digital['predicted']:.1f} %.",
    ]
    receiver = {run: receiver_check(args.awgn, run) for run in args.receivers.split(",")}
    lines += ["", "## Other receivers vs the grid's (same scenes, maps and x_T)", ""]
    lines += ["| run | scheme | budget | SNR dB | LPIPS | LPIPS grid | difference [95 %] | pixel acc. difference pts |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for run, r in ((run, r) for run, rows in receiver.items() for r in rows):
        d, p = r["difference"], r["pixel_accuracy_difference"]
        lines.append(
            f"| {Path(run).name} | {r['scheme']} | {r['budget']:g} | {r['snr']:g} | {r['lpips_other']:.3f} | "
            f"{r['lpips_grid']:.3f} | "
            f"{d['value']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] | {100 * p['value']:+.2f} [{100 * p['lo']:+.2f}, "
            f"{100 * p['hi']:+.2f}] |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_json(
        RESULTS / "semcom_checks.json",
        {
            "links": links,
            "rayleigh_analog": analog,
            "rayleigh_digital": digital,
            "receivers": receiver,
            "runs": vars(args),
        },
    )
    write_text(
        RESULTS / "semcom_checks.md", "# Checks of the comparison's shortcuts (bench/semcom_checks.py)\n\n" + text
    )


if __name__ == "__main__":
    main()
