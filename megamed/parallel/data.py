"""Data parallelism: averaging gradients over the DP group.

Gradients of each dtype are flattened into one buffer and all-reduced in a single call
(fewer, larger messages), then copied back. Bucketing with overlap and the distributed
optimizer build on this module.
"""
from __future__ import annotations

from typing import Iterable

import torch

from megamed.parallel import collectives as C


def average_gradients(params: Iterable[torch.nn.Parameter], dp_group) -> None:
    """grad <- mean of grad over the DP group, for every parameter that has one."""
    if C.group_size(dp_group) == 1:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        C.all_reduce(flat, dp_group, "avg")
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
