"""Which Triton launch configurations a kernel may use here.

`triton.autotune` times candidates with CUDA events, so it only means something when
kernels are compiled for a GPU. The interpreter (TRITON_INTERPRET=1) gets one small fixed
config instead: small blocks make tiny test shapes span several blocks, so loop bounds
and the masks at ragged edges are exercised on a CPU.

On a GPU, candidates whose estimated shared memory exceeds the device's limit are pruned
before compiling (fp32 tiles are twice the size of bf16 ones). MEGAMED_AUTOTUNE=0 skips
the timing and takes the first candidate that fits: test runs then compile one config
per kernel variant instead of all of them.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
import triton

from .interpreter import triton_interpreter_on


def tuning_enabled() -> bool:
    """Time every fitting candidate (read per new shape, so tests can switch it)."""
    return os.environ.get("MEGAMED_AUTOTUNE", "1") != "0"


def _shared_memory_limit(device: torch.device) -> int:
    props = triton.runtime.driver.active.utils.get_device_properties(device.index or 0)
    return props["max_shared_mem"]


def _fitting(smem_bytes: Callable, device_arg: str):
    """early_config_prune: the candidates that fit in shared memory (at least the
    smallest), or only the first of them when tuning is off."""
    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        limit = _shared_memory_limit(args[device_arg].device)
        fit = [c for c in configs if smem_bytes(c, args) <= limit]
        fit = fit or [min(configs, key=lambda c: smem_bytes(c, args))]
        return fit if tuning_enabled() else fit[:1]
    return prune


def autotune(cuda_configs: list, interpreter_config, key: list[str], smem_bytes: Callable,
             device_arg: str):
    """`triton.autotune` over the configs this machine can use (see the module docstring).

    smem_bytes(config, args) estimates a config's shared memory from the kernel's
    arguments; device_arg names a tensor argument that gives the device."""
    if triton_interpreter_on() or not torch.cuda.is_available():
        return triton.autotune(configs=[interpreter_config], key=key)
    return triton.autotune(configs=cuda_configs, key=key,
                           prune_configs_by={"early_config_prune":
                                             _fitting(smem_bytes, device_arg)})
