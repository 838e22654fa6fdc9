#!/usr/bin/env bash
# One node with 8 GPUs on NVLink: poc-7b at TP8, or kernel work.
#   bash launch/single-node.sh [--profile poc-7b] [flags of examples/pretrain_32b.py]
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA_DEVICE_MAX_CONNECTIONS=1
exec .venv/bin/torchrun --standalone --nproc_per_node "${NPROC:-8}" \
  examples/pretrain_32b.py --profile poc-7b "$@"
