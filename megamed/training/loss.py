"""The loss arithmetic of a training step, in one place: how a micro batch's per-token loss
becomes the scalar backward starts from (normalisation, fp16 loss scale), and how the
step's loss is reduced for the log.

Normalisation today: each micro batch's loss is the mean over its (unmasked) tokens divided
by the number of micro batches, so the accumulated gradient is that of the mean loss over
this rank's samples; the DP gradient average (parallel/data.py) then gives the global-batch
mean a single process computes. A token-weighted mean over DP (every unmasked token of the
global batch weighs the same, whatever its micro batch holds) changes only `normalise`
(divide the masked sum by the step's global token count, known before the step) and the
DP gradient average (a sum instead); the schedules do not see either.

The detached losses stay on the device and are summed there; `reduce` is the step's one
host transfer.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import torch

from megamed.data.batch import MicroBatch
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState


# A sample's input kind: the first modality it has (MicroBatch.has_<m>), else text.
INPUT_KINDS = ("text", "image", "ecg", "eeg")


def input_kinds(batch: MicroBatch) -> Optional[torch.Tensor]:
    """[b] int64 index into INPUT_KINDS, or None for a batch without presence flags."""
    flags = [batch.has_image, batch.has_ecg, batch.has_eeg]
    if all(f is None for f in flags):
        return None
    kinds = None
    for i, has in reversed(list(enumerate(flags, 1))):  # the first modality wins
        if has is not None:
            base = torch.zeros_like(has, dtype=torch.int64) if kinds is None else kinds
            kinds = torch.where(has, torch.full_like(base, i), base)
    return kinds


class StepLoss:
    """Per optimizer step: `start(scale)`, then `loss_fn(batch)` for each micro batch on
    the stage with the output layer (the schedule calls it on the model's output), then
    `reduce(state)` for the logged value.

    With multimodal batches it also sums each input kind's masked loss and token count
    (`reduce_by_kind`: the mean loss of text-only, image, ECG and EEG samples), and
    `weights` ({kind: w}, default 1) scale each kind's samples in the loss backward
    starts from (per-modality loss weights; the logged losses stay unweighted)."""

    def __init__(self, num_micro_batches: int, device: torch.device,
                 weights: Optional[dict] = None):
        self.num_micro_batches = num_micro_batches
        self.total = torch.zeros((), dtype=torch.float32, device=device)
        self.by_kind = torch.zeros(2, len(INPUT_KINDS), dtype=torch.float32, device=device)
        self.weights = torch.tensor([(weights or {}).get(k, 1.0) for k in INPUT_KINDS],
                                    dtype=torch.float32, device=device)
        self.weighted = any(w != 1.0 for w in (weights or {}).values())
        self.scale = 1.0

    def start(self, scale: float = 1.0) -> None:
        """A new step; `scale` multiplies the loss backward starts from (fp16 loss
        scaling, training/optimizer.py; 1.0 otherwise)."""
        self.total.zero_()
        self.by_kind.zero_()
        self.scale = scale

    def normalise(self, per_token: torch.Tensor, loss_mask: Optional[torch.Tensor]
                  ) -> torch.Tensor:
        """per_token [b, s] fp32 -> this micro batch's share of the step's mean loss."""
        if loss_mask is None:
            return per_token.mean() / self.num_micro_batches
        return (per_token * loss_mask).sum() / loss_mask.sum() / self.num_micro_batches

    def loss_fn(self, batch: MicroBatch) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function from the model's output (per-token loss [b, s]) to the scalar
        backward starts from."""
        return partial(self._loss, batch)

    def _loss(self, batch: MicroBatch, per_token: torch.Tensor) -> torch.Tensor:
        loss = self.normalise(per_token, batch.loss_mask)
        self.total += loss.detach().float()
        kinds = input_kinds(batch)
        if kinds is not None:
            mask = (torch.ones_like(per_token) if batch.loss_mask is None
                    else batch.loss_mask.to(per_token.dtype))
            rows = torch.stack([(per_token.detach() * mask).sum(1), mask.sum(1)])  # [2, b]
            self.by_kind.index_add_(1, kinds, rows.float())
            if self.weighted:
                loss = self.normalise(per_token * self.weights[kinds][:, None], mask)
        # Scaling the loss scales its gradient exactly (d(s * l) = s * dl), as scaling the
        # incoming gradient would.
        return loss * self.scale if self.scale != 1.0 else loss

    def reduce(self, state: ParallelState) -> float:
        """The step's mean loss: only the last pipeline stage computed its share (the others
        hold zero), so sum over PP, then average over DP."""
        loss = C.all_reduce(self.total.clone(), state.pp_group)
        return float(C.all_reduce(loss, state.dp_group, "avg"))

    def reduce_by_kind(self, state: ParallelState) -> dict[str, float]:
        """{kind: mean loss over that kind's unmasked tokens of the global batch} for the
        kinds present this step (empty without presence flags)."""
        sums = C.all_reduce(C.all_reduce(self.by_kind.clone(), state.pp_group), state.dp_group)
        return {k: float(s / n) for k, (s, n) in zip(INPUT_KINDS, sums.t().tolist()) if n > 0}
