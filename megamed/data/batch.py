"""The micro batch as a typed object, and the data source that makes one for a stage.

A pipeline stage asks only for the fields it uses: the first stage the inputs (`tokens`;
with the multimodal model also `images`, `ecg`, `eeg`), the last stage the labels
(`targets`, `loss_mask`), a middle stage nothing, so it reads nothing. Which samples a micro batch holds is
`BatchLayout`'s arithmetic (sampler.py): a function of (step, DP rank, micro batch) only, so
every TP rank of one DP rank reads the same samples, and any layout the same as one process.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from megamed.data.sampler import BatchLayout

INPUTS = frozenset({"tokens"})
LABELS = frozenset({"targets", "loss_mask"})
# What the multimodal model's first stage also reads: {modality: (inputs, present flags)}
MEDIA_FIELDS = {"image": ("images", "has_image"), "ecg": ("ecg", "has_ecg"),
                "eeg": ("eeg", "has_eeg")}
MEDIA = frozenset(f for pair in MEDIA_FIELDS.values() for f in pair)
PRESENCE = frozenset(has for _, has in MEDIA_FIELDS.values())  # the last stage's loss per kind


@dataclass
class MicroBatch:
    """One micro batch; a field a stage did not ask for is None.

    tokens    [micro_batch, seq] int64: input ids (first stage)
    targets   [micro_batch, seq] int64: the next token of each position (last stage)
    loss_mask [micro_batch, seq] float: 1 where a target counts, 0 where not (padding,
              image placeholders); None: every target counts
    images    [micro_batch, C, (D,) H, W] float16 in [0, 1]; zeros where has_image is False
    has_image [micro_batch] bool
    ecg, eeg  [micro_batch, leads, samples] float16; zeros where has_ecg / has_eeg is False
    has_ecg, has_eeg [micro_batch] bool
    sample_ids [micro_batch] int64: manifest index of each sample (ShardLoader)
    """
    tokens: Optional[torch.Tensor] = None
    targets: Optional[torch.Tensor] = None
    loss_mask: Optional[torch.Tensor] = None
    images: Optional[torch.Tensor] = None
    has_image: Optional[torch.Tensor] = None
    ecg: Optional[torch.Tensor] = None
    has_ecg: Optional[torch.Tensor] = None
    eeg: Optional[torch.Tensor] = None
    has_eeg: Optional[torch.Tensor] = None
    sample_ids: Optional[torch.Tensor] = None

    def media(self) -> dict:
        """{modality: (inputs, present)} for the model's encoders (None where absent)."""
        return {m: (getattr(self, x), getattr(self, has)) for m, (x, has) in
                MEDIA_FIELDS.items()}

    def to(self, device, non_blocking: bool = False) -> "MicroBatch":
        """The same micro batch with every present tensor on `device`."""
        return MicroBatch(**{f.name: None if getattr(self, f.name) is None
                             else getattr(self, f.name).to(device, non_blocking=non_blocking)
                             for f in dataclasses.fields(self)})


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
