#!/usr/bin/env bash
# Runs the DICOM decode, error, limit and hostile-input tests against an AddressSanitizer
# build of megamed._dicom, built into a temporary directory (the in-place build is
# untouched). The hostile families run in child processes that inherit the sanitizer
# (LD_PRELOAD); test_dicom_hostile.py drops their address-space limit under it.
# PYTHONMALLOC=malloc puts every bytes object on the instrumented heap, so a read past
# the end of the file buffer is caught, not only one past a large allocation.
#   bash tests/data/run_under_asan.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# A copy of the package, without the in-place extension, found first on PYTHONPATH...
mkdir -p "$WORK/lib"
tar -c --exclude='*.so' --exclude='__pycache__' megamed | tar -x -C "$WORK/lib"
# ...and the sanitized extension built into it.
FLAGS="-fsanitize=address -fno-omit-frame-pointer -g"
CFLAGS="$FLAGS" CXXFLAGS="$FLAGS" LDFLAGS="-fsanitize=address" \
  .venv/bin/python setup.py -q build_ext --build-lib "$WORK/lib" --build-temp "$WORK/tmp" >/dev/null
# libstdc++ is preloaded too: python is not linked against it, and ASan must find the real
# __cxa_throw at start-up to intercept C++ exceptions.
ASAN_LIB="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
cd "$WORK"  # so that the checkout's own megamed/ is not first on sys.path
PYTHONMALLOC=malloc PYTHONPATH="$WORK/lib" LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  "$ROOT/.venv/bin/python" - <<'PY'
import megamed._dicom as m, subprocess, sys
assert "/tmp" in m.__file__, m.__file__
symbols = subprocess.run(["nm", "-D", m.__file__], capture_output=True, text=True).stdout
assert "__asan_report" in symbols, "extension is not instrumented"
print("sanitized extension:", m.__file__)
PY
PYTHONMALLOC=malloc PYTHONPATH="$WORK/lib" LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$ROOT" \
  "$ROOT/tests/data/test_dicom_decode.py" "$ROOT/tests/data/test_dicom_errors.py" \
  "$ROOT/tests/data/test_dicom_limits.py" "$ROOT/tests/data/test_dicom_hostile.py" \
  "$ROOT/tests/data/test_dicom_jpeg.py" "$@"
