"""Every family of structured hostile inputs (tests/data/hostile_dicom.py) runs in a child
process under a 2 GiB address-space limit and a watchdog per call (5 s of CPU, 60 s in
all): a crash, a hang or any exception but DicomError (or a DicomError without its
expected reason) fails the test.
Under AddressSanitizer (tests/data/run_under_asan.sh) the children are sanitized too and the
address-space limit is dropped (ASan reserves terabytes of it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "hostile_dicom.py"
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
FAMILIES = ["nesting", "photometric", "fragments", "offset_tables", "deflate", "mutation"]


@pytest.mark.parametrize("family", FAMILIES)
def test_hostile_family_gives_arrays_or_dicom_errors(family):
    command = [sys.executable, str(RUNNER), family] + (["--no-limit"] if UNDER_ASAN else [])
    child = subprocess.run(command, capture_output=True, text=True, timeout=600)
    context = f"exit status {child.returncode}; stderr ends:\n{child.stderr[-3000:]}"
    assert child.returncode == 0, f"{family}: crashed or hung ({context})"
    summary = json.loads(child.stdout.splitlines()[-1])
    assert not summary["failures"], "\n".join(summary["failures"][:20])
    assert summary["inputs"] > 0 and summary["errors"] > 0, summary
    if UNDER_ASAN:  # the sanitized build, not the checkout's own
        assert not summary["extension"].startswith(str(RUNNER.parents[2])), summary["extension"]
