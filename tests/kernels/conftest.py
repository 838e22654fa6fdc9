"""Kernel tests run on CUDA when present, else on the CPU in the Triton interpreter.

The root tests/conftest.py sets TRITON_INTERPRET=1 without a GPU before any test module
imports a kernel; the same two lines here keep this folder correct when it is run alone
from another root (setdefault: whichever runs first wins, with the same value).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
