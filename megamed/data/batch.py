"""The micro batch as a typed object, and the data source that makes one for a stage.

A pipeline stage asks only for the fields it uses: the first stage the inputs (`tokens`;
later also `images`, `waveforms`), the last stage the labels (`targets`, `loss_mask`), a
middle stage nothing, so it reads nothing. Which samples a micro batch holds is
`BatchLayout`'s arithmetic (sampler.py): a function of (step, DP rank, micro batch) only, so
every TP rank of one DP rank reads the same samples, and any layout the same as one process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from megamed.data.sampler import BatchLayout

INPUTS = frozenset({"tokens"})
LABELS = frozenset({"targets", "loss_mask"})


@dataclass
class MicroBatch:
    """One micro batch; a field a stage did not ask for is None.

    tokens    [micro_batch, seq] int64: input ids (first stage)
    targets   [micro_batch, seq] int64: the next token of each position (last stage)
    loss_mask [micro_batch, seq] float: 1 where a target counts, 0 where not (padding,
              image placeholders); None: every target counts
    images, waveforms: for the encoders of the multimodal model (not produced yet)
    """
    tokens: Optional[torch.Tensor] = None
    targets: Optional[torch.Tensor] = None
    loss_mask: Optional[torch.Tensor] = None
    images: Optional[torch.Tensor] = None
    waveforms: Optional[torch.Tensor] = None


class TokenSource:
    """Micro batches of a token dataset (samples of seq + 1 ids: `dataset[i]`) for one DP
    rank. Synchronous: a sharded, prefetching loader will implement the same
    `micro_batch(step, micro, fields)`."""

    def __init__(self, dataset, layout: BatchLayout, dp_rank: int, device="cpu"):
        self.dataset, self.layout, self.dp_rank, self.device = dataset, layout, dp_rank, device

    def micro_batch(self, step: int, micro: int, fields: frozenset = INPUTS | LABELS
                    ) -> MicroBatch:
        """Micro batch `micro` of optimizer step `step`, with only `fields` filled."""
        if not fields & (INPUTS | LABELS):
            return MicroBatch()
        indices = self.layout.sample_indices(step, self.dp_rank, micro)
        rows = np.stack([self.dataset[i] for i in indices]).astype(np.int64)
        rows = torch.from_numpy(rows).to(self.device)
        return MicroBatch(tokens=rows[:, :-1] if "tokens" in fields else None,
                          targets=rows[:, 1:] if "targets" in fields else None)
