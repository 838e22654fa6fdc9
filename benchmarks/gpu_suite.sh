#!/usr/bin/env bash
# The kernel suite for one GPU (written for a single H200): install, the kernel tests on
# CUDA, benchmarks/kernels.py, then benchmarks/mfu.py on 2 of medllm-32b's 64 layers (the
# whole training step on the GPU: bf16, Triton kernels, distributed optimizer), then
# benchmarks/plan_memory.py: peak torch.cuda.max_memory_allocated of those 2 layers at
# medllm-32b's TP 4 slice (rank 0 of a fake process group) against tools/plan.py's figure
# for the same slice. Everything it writes goes to OUTDIR (8 files, the device tool's
# limit: env.txt (with the install log), kernel_tests.log, bench.log, kernels.json, mfu.log
# (with the plan-memory log), mfu.json, plan_memory.json, summary.json).
#
#   bash benchmarks/gpu_suite.sh OUTDIR                # on the GPU machine
#   bash benchmarks/gpu_suite.sh OUTDIR --cpu-dry-run  # rehearse every step on a CPU
#
# It assumes no package registry: the machine's python must already have torch, triton,
# numpy and pytest (pytest-timeout and pytest-xdist are used when present). Each step has
# its own time limit (seconds; override with the variables below) so that the whole suite
# ends within 8 minutes. Exit status: 0 when every step passed (or no CUDA device and no
# dry run: nothing to measure, said so), 1 when a step failed, 2 when a package is missing.
set -uo pipefail

usage() { echo "usage: bash benchmarks/gpu_suite.sh OUTDIR [--cpu-dry-run]" >&2; exit 64; }
[[ $# -ge 1 && $1 != -* ]] || usage
OUT=$(mkdir -p "$1" && cd "$1" && pwd) || usage
DRY_RUN=0
[[ ${2:-} == --cpu-dry-run ]] && DRY_RUN=1
[[ $# -le 2 && ( -z ${2:-} || $DRY_RUN == 1 ) ]] || usage

PY=${PYTHON:-python3}
# Absolute before the cd below; symlinks kept (a venv's python is one).
[[ $PY == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
INSTALL_S=${INSTALL_S:-60}  # a retry without the C++ extension gets 30 more
TESTS_S=${TESTS_S:-145}
BENCH_S=${BENCH_S:-125}
MFU_S=${MFU_S:-100}
MEMORY_S=${MEMORY_S:-50}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=()  # "name rc seconds" per step, for summary.json

say() { echo "[gpu_suite $(date +%H:%M:%S)] $*"; }

# step NAME LOG LIMIT CMD...: runs CMD under `timeout`, output to the terminal and LOG.
step() {
    local name=$1 log=$2 limit=$3; shift 3
    local start=$SECONDS
    say "$name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    [[ $rc == 124 || $rc == 137 ]] && say "$name: timed out after ${limit}s"
    say "$name: exit $rc after $((SECONDS - start))s"
    STEPS+=("$name $rc $((SECONDS - start))")
    return "$rc"
}

write_summary() {  # write_summary STATUS
    local status=$1 entries=() s
    for s in "${STEPS[@]}"; do
        read -r name rc secs <<<"$s"
        entries+=("{\"step\": \"$name\", \"exit\": $rc, \"seconds\": $secs}")
    done
    local joined
    joined=$(IFS=,; echo "${entries[*]}")
    printf '{"suite": "gpu_suite", "status": "%s", "dry_run": %s, "steps": [%s]}\n' \
        "$status" "$([[ $DRY_RUN == 1 ]] && echo true || echo false)" "$joined" \
        >"$OUT/summary.json"
    say "status: $status (summary in $OUT/summary.json)"
}

check_packages() {
    local missing
    missing=$("$PY" - <<'EOF'
import importlib.util
print(" ".join(n for n in ("torch", "triton", "numpy", "pytest")
               if importlib.util.find_spec(n) is None))
EOF
    ) || { say "cannot run $PY"; exit 2; }
    if [[ -n $missing ]]; then
        say "missing Python packages for $PY: $missing (no registry here: carry them as wheels" \
            "and install them with pip --no-index)"
        write_summary "missing packages: $missing"
        exit 2
    fi
}

record_environment() {
    {
        echo "date: $(date -u +%FT%TZ)"; echo "python: $("$PY" --version 2>&1)"
        "$PY" -c 'import torch, triton, numpy
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
print("triton", triton.__version__, "numpy", numpy.__version__)' 2>&1
        command -v nvidia-smi >/dev/null && nvidia-smi 2>&1
        "$PY" -m pip list 2>/dev/null | grep -i -E "^(torch|triton|numpy|pytest|apex)"
    } >"$OUT/env.txt"
    cat "$OUT/env.txt"
}

install_project() {
    # Already installed from this checkout (e.g. a second run): nothing to do.
    if "$PY" -c 'import os, megamed.kernels as k
assert os.path.samefile(k.__path__[0], "kernels")' 2>/dev/null; then
        say "install: megamed already installed from $(pwd)" | tee "$OUT/install.log"
        STEPS+=("install 0 0")
        return 0
    fi
    step install "$OUT/install.log" "$INSTALL_S" \
        "$PY" -m pip install --no-deps --no-build-isolation --no-input -e . && return 0
    # The C++ DICOM extension may not build here (no zlib headers, say); this suite does
    # not use it. A pybind11 that fails to import makes setup.py install without it.
    say "install failed; retrying without the C++ extension (this suite does not need it)"
    local shim
    shim=$(mktemp -d)
    mkdir -p "$shim/pybind11"
    echo 'raise ImportError("hidden by gpu_suite.sh: installing without the C++ extension")' \
        >"$shim/pybind11/__init__.py"
    PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}" step install-retry "$OUT/install.retry" \
        30 "$PY" -m pip install --no-deps --no-build-isolation --no-input -e .
    local rc=$?
    cat "$OUT/install.retry" >>"$OUT/install.log" && rm -f "$OUT/install.retry"
    rm -rf "$shim"
    return $rc
}

run_tests() {
    local args=(-q -rs -p no:cacheprovider)
    # pyproject.toml sets `timeout`; without pytest-timeout pytest only warns about it.
    if "$PY" -c 'import xdist' 2>/dev/null; then
        args+=(-n 8)  # compiling kernel variants dominates; spread it over the CPU cores
    else
        say "pytest-xdist not importable: tests compile serially and may hit the limit"
    fi
    # One config per kernel variant: the tests check correctness, not the tuner's pick;
    # test_every_tuning_candidate_is_correct covers every candidate.
    MEGAMED_AUTOTUNE=0 step kernel-tests "$OUT/kernel_tests.log" "$TESTS_S" \
        "$PY" -m pytest "${args[@]}" tests/kernels
}

run_mfu() {
    # The dry run takes the tiny profile: 2 layers of medllm-32b do not fit a CPU's memory.
    local model=(--profile medllm-32b --layers 2)
    [[ $DRY_RUN == 1 ]] && model=(--profile tiny)
    PYTHONUNBUFFERED=1 step mfu "$OUT/mfu.log" "$MFU_S" \
        "$PY" benchmarks/mfu.py "${model[@]}" --steps 4 --warmup 2 --out "$OUT/mfu.json"
}

run_plan_memory() {
    # The dry run takes the tiny profile at TP 2 with sequence parallelism (same code path).
    local model=(--profile medllm-32b --layers 2)
    [[ $DRY_RUN == 1 ]] && model=(--profile tiny --tp 2 --sp)
    MEGAMED_AUTOTUNE=0 PYTHONUNBUFFERED=1 step plan-memory "$OUT/plan_memory.log" "$MEMORY_S" \
        "$PY" benchmarks/plan_memory.py "${model[@]}" --out "$OUT/plan_memory.json"
    local rc=$?
    cat "$OUT/plan_memory.log" >>"$OUT/mfu.log" && rm -f "$OUT/plan_memory.log"
    return $rc
}

# At most 8 files come back from the device: the install log joins env.txt.
fold_install_log() {
    [[ -f $OUT/install.log ]] && { echo "--- install"; cat "$OUT/install.log"; } >>"$OUT/env.txt"
    rm -f "$OUT/install.log"
}

main() {
    check_packages
    record_environment
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        if [[ $DRY_RUN == 0 ]]; then
            say "no CUDA device visible to $PY: nothing to measure. On a CPU, rehearse the" \
                "steps with --cpu-dry-run."
            write_summary "skipped: no CUDA device"
            exit 0
        fi
        say "dry run on the CPU: kernels run in the Triton interpreter; no timings"
        export TRITON_INTERPRET=1
    fi
    local failed=0
    install_project || failed=1
    if [[ $failed == 0 ]]; then
        run_tests || failed=1
        PYTHONUNBUFFERED=1 step benchmark "$OUT/bench.log" "$BENCH_S" \
            "$PY" benchmarks/kernels.py --out "$OUT" || failed=1
        run_mfu || failed=1
        run_plan_memory || failed=1
    fi
    fold_install_log
    if [[ $failed == 0 ]]; then write_summary passed; else write_summary failed; fi
    return $failed
}

main
