#!/usr/bin/env bash
# Any machine, no GPU: the demo profile on gloo. NPROC processes, TP/PP from the flags.
#   NPROC=4 bash launch/cpu.sh --tp 2 --pp 2
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/torchrun --standalone --nproc_per_node "${NPROC:-2}" \
  examples/pretrain_32b.py --profile demo "${@:---tp 2}"
