"""Which Triton launch configurations a kernel may use here.

`triton.autotune` times candidates with CUDA events, so it is only meaningful when kernels
are compiled for a GPU. The interpreter (TRITON_INTERPRET=1) gets one small fixed
config instead: small blocks make tiny test shapes span several blocks, so the loop
bounds and the masks at ragged edges are exercised on a CPU.
"""
from __future__ import annotations

import os

import torch
import triton

from .backend import triton_interpreter_on


def tuning_enabled() -> bool:
    """Autotune on a GPU unless MEGAMED_AUTOTUNE=0 (test runs: the first CUDA config only,
    which saves compiling every candidate for every tested head dim and dtype)."""
    return (torch.cuda.is_available() and not triton_interpreter_on()
            and os.environ.get("MEGAMED_AUTOTUNE", "1") != "0")


def autotune(cuda_configs: list, interpreter_config, key: list[str]):
    """`triton.autotune` over the configs this machine can use (see the module docstring)."""
    if tuning_enabled():
        configs = cuda_configs
    elif triton_interpreter_on() or not torch.cuda.is_available():
        configs = [interpreter_config]
    else:
        configs = cuda_configs[:1]
    return triton.autotune(configs=configs, key=key)
