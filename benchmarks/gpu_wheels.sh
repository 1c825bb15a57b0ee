#!/usr/bin/env bash
# The wheels the lent GPU machine lacks (README, "Benchmarks on GPU"): it reaches no registry, and its image
# (device tool's KINDS.md: Python 3.12, torch, transformers, lightning, ...) has no datasets, jsonargparse or wandb,
# so `pip install -e .` cannot run there. This set is what `train.py fit`, `eval.py` and benchmarks/gpu_check.py
# import at start-up and the image does not have, found by importing them in an environment of the image's packages
# (benchmarks/gpu_rehearsal.sh), each pinned, one version each, no dependencies resolved. Not in it, since nothing
# above imports them: wandb-workspaces (vscale.launch.dashboard only), lm-eval (an optional extra), omegaconf,
# sentry-sdk, gitpython. Writes .whl/ (ignored) afresh and prints its size.
#     bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19                              # vscale.data
    jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0         # LightningCLI, eval.py
    wandb==0.31.0 platformdirs==4.14.9 opentelemetry-api==1.45.2                  # eval.py's report (import wandb)
    pydantic==2.14.4 pydantic-core==2.50.5 typing-inspection==0.4.5 annotated-types==0.8.0  # wandb's settings
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
rm -rf .whl
"${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]/#/--platform=}" -d .whl "${WHEELS[@]}"
got=$(ls .whl/*.whl | wc -l)
[ "$got" -eq "${#WHEELS[@]}" ] || { echo "gpu_wheels: $got wheels in .whl for ${#WHEELS[@]} pins" >&2; exit 1; }
dups=$(ls .whl | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
[ -z "$dups" ] || { echo "gpu_wheels: two versions of $dups" >&2; exit 1; }
ls -1 .whl
echo "gpu_wheels: ${#WHEELS[@]} wheels, $(du -cb .whl/*.whl | tail -1 | cut -f1) bytes ($(du -ch .whl/*.whl | tail -1 | cut -f1)) in .whl/"
