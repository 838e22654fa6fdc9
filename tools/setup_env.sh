#!/usr/bin/env bash
# Sets up everything on a fresh machine: a virtual environment in .venv, the CPU build of
# torch, the test tools, and megamed itself (editable, with the C++ DICOM extension).
# Safe to run again: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# The C++ DICOM extension links zlib (deflated transfer syntax).
if [ ! -f /usr/include/zlib.h ]; then
  echo "setup: installing zlib headers (zlib1g-dev)"
  apt-get update -qq && apt-get install -y -qq zlib1g-dev
fi
# The audit-log tests start a throwaway PostgreSQL server (initdb/pg_ctl); they skip, saying
# so, only where no server binaries exist.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "setup: installing the PostgreSQL server (audit-log tests)"
  (apt-get update -qq && apt-get install -y -qq postgresql) \
    || echo "setup: could not install PostgreSQL; the PostgreSQL audit tests will skip"
fi
# Ask for the exact release first so pip takes the CPU wheel, not a multi-GB CUDA build.
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install setuptools wheel pybind11
# .[test] brings the monitoring and audit dependencies too (prometheus_client, nvidia-ml-py,
# matplotlib, tensorboard, psycopg[binary]); codecs: libjpeg, CharLS and OpenJPEG for the
# compressed DICOM syntaxes csrc/ leaves to them.
"${PIP[@]}" install --no-build-isolation -e ".[test,codecs]"
.venv/bin/python -c "import megamed, megamed.kernels, torch, sentencepiece, webdataset, tqdm; print('setup: ok, torch', torch.__version__)"
