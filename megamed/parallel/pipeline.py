"""Pipeline schedules. A schedule runs the forward and backward passes of every micro batch
of one optimizer step on this rank and returns the mean loss over its micro batches (on the
stage that computes the loss).

Loss scaling: each micro batch's loss is the mean over its tokens, divided by the number of
micro batches, so the accumulated gradient is that of the mean loss over this rank's
samples; averaging over DP then gives the gradient of the global-batch mean, exactly as one
process computing the whole batch would.
"""
from __future__ import annotations

from typing import Callable

import torch

MicroBatchFn = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def forward_backward_no_pipelining(model: torch.nn.Module, get_micro_batch: MicroBatchFn,
                                   num_micro_batches: int) -> torch.Tensor:
    """PP=1: forward then backward of each micro batch in turn (one in flight at a time).
    Returns the detached mean loss, fp32 scalar."""
    total = torch.zeros((), dtype=torch.float32)
    for m in range(num_micro_batches):
        tokens, targets = get_micro_batch(m)
        loss = model(tokens, targets).mean() / num_micro_batches
        loss.backward()
        total += loss.detach().float().cpu()
    return total
