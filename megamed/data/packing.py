"""One study -> one fixed-length token row with its modality placeholders reserved.

Row layout (seq_length + 1 ids, so inputs = row[:-1] and targets = row[1:] are both
seq_length long):

    [<image> x budget.image if the study has an image]
    [<ecg>   x budget.ecg   if it has an ECG]
    [<eeg>   x budget.eeg   if it has an EEG]
    <bos> text ids <eos> <pad> <pad> ...

The model replaces each run of placeholders with that modality's encoder tokens (so the
count per modality is fixed: pipeline stages exchange fixed shapes). A text longer than
the row is cut at the row's end (it then has no <eos>). loss_mask[i] is 1 where targets[i]
is a text token or <eos>, 0 where it is a placeholder, <bos> or padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

MODALITIES = ("image", "ecg", "eeg")
PLACEHOLDERS = {"image": "<image>", "ecg": "<ecg>", "eeg": "<eeg>"}


@dataclass(frozen=True)
class TokenBudget:
    """Placeholder positions reserved per present modality (issue 13 fixes the numbers)."""
    image: int = 64
    ecg: int = 32
    eeg: int = 32

    def total(self) -> int:
        return self.image + self.ecg + self.eeg


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int
    image: int
    ecg: int
    eeg: int


def _id(tokenizer, name: str) -> Optional[int]:
    value = getattr(tokenizer, name, None)
    if callable(value):  # sentencepiece.SentencePieceProcessor: bos_id(), eos_id(), pad_id()
        value = value()
    return None if value is None or value < 0 else int(value)


def special_ids(tokenizer) -> SpecialIds:
    """Reads bos/eos/pad and the placeholder ids from a megamed tokenizer or a plain
    sentencepiece processor (placeholders: `placeholder_id(modality)`, attributes
    `image_id`/`ecg_id`/`eeg_id`, or `piece_to_id("<image>")`)."""
    ids = {name: _id(tokenizer, f"{name}_id") for name in ("bos", "eos", "pad")}
    for modality in MODALITIES:
        if hasattr(tokenizer, "placeholder_id"):
            ids[modality] = int(tokenizer.placeholder_id(modality))
        elif _id(tokenizer, f"{modality}_id") is not None:
            ids[modality] = _id(tokenizer, f"{modality}_id")
        else:
            piece = PLACEHOLDERS[modality]
            found = tokenizer.piece_to_id(piece) if hasattr(tokenizer, "piece_to_id") else None
            unk = _id(tokenizer, "unk_id")
            ids[modality] = None if found is None or found == unk else int(found)
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise ValueError(f"tokenizer has no id for {', '.join(missing)}: train it with "
                         f"pad/bos/eos and the {', '.join(PLACEHOLDERS.values())} symbols")
    return SpecialIds(**ids)


def pack_study(text_ids: Sequence[int], present: Sequence[str], seq_length: int,
               budget: TokenBudget, ids: SpecialIds) -> tuple[np.ndarray, np.ndarray]:
    """row int64 [seq_length + 1], loss_mask float32 [seq_length] (aligned with row[1:])."""
    row = np.full(seq_length + 1, ids.pad, dtype=np.int64)
    pos = 0
    for modality in MODALITIES:
        if modality in present:
            n = getattr(budget, modality)
            row[pos:pos + n] = getattr(ids, modality)
            pos += n
    text = [ids.bos, *text_ids, ids.eos][:seq_length + 1 - pos]
    row[pos:pos + len(text)] = text
    mask = np.zeros(seq_length, dtype=np.float32)
    # targets[i] = row[i + 1]: text tokens and <eos> sit at row positions pos+1 .. pos+len-1.
    mask[pos:pos + len(text) - 1] = 1.0
    return row, mask
