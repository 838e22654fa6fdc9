"""Whether Triton runs kernels in its CPU interpreter. A leaf that imports no triton: the
backend switch (backend.py) and the launch configurations (tuning.py) both ask it, and
neither imports the other."""
from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on", "y")


def triton_interpreter_on() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (read as Triton reads it)."""
    return os.environ.get("TRITON_INTERPRET", "").lower() in _TRUE
