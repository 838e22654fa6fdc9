"""The micro batch that flows from the loader into the training step.

Every field is optional: a pipeline stage asks the loader only for what it needs (the first
stage: tokens and modality inputs; the last stage: targets and the loss mask), and the
fields it did not ask for stay None. Shapes, with b the micro-batch size and s the sequence
length:

    tokens     [b, s]  int64    input ids (modality placeholders first, then the text)
    targets    [b, s]  int64    next-token ids (tokens shifted by one)
    loss_mask  [b, s]  float32  1 where the target is a text token, 0 on placeholders/pad
    images     [b, C, (D,) H, W]  float16, windowed to [0, 1]; zeros where has_image is False
    has_image  [b]     bool
    ecg        [b, leads, samples]  float16; zeros where has_ecg is False
    has_ecg    [b]     bool
    eeg        [b, leads, samples]  float16; zeros where has_eeg is False
    has_eeg    [b]     bool
    sample_ids [b]     int64    manifest index of each sample (after corrupt-sample replacement)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch


@dataclass
class MicroBatch:
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

    def to(self, device, non_blocking: bool = False) -> "MicroBatch":
        """The same micro batch with every present tensor on `device`."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return MicroBatch(**{k: v.to(device, non_blocking=non_blocking) if v is not None else None
                             for k, v in moved.items()})
