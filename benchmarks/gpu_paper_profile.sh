#!/usr/bin/env bash
# The paper profile reduced to one GPU in under ten minutes (issue #12 item 5): trains resnet50 and
# convnext_tiny at 224 px (standard, PGD-AT) and attacks them with the paper budgets, printing the
# GPU's name, every step's wall time and the numbers (Markdown). Arguments go to the Python script
# (--data PATH, --archs, --eps; --allow-cpu --tiny for a dry run on a CPU). Exit status 2: no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" benchmarks/gpu_paper_profile.py "$@"
