"""Synthetic multimodal studies with learnable structure, for the `tiny-mm` tests and the
`demo` profile before real shards exist.

Sample i depends only on (seed, i). It is text-only, or an image (CT-like volume, the
profile's windows as channels) with text, or an ECG/EEG with text (chosen at random among
the configured modalities). A study has a class k in [0, classes): its image is class k's
fixed template plus noise, its waveform a sine at class k's frequency plus noise, and its
report starts with a finding token that names (modality, k). The rest of the report follows
a fixed random bigram chain. So the finding token is predictable only by a model that reads
the image or the waveform (from ln(classes) to 0 nats), the rest by any model that learns
the chain.

Rows are packed as the shard loader packs them (data/packing.py): placeholders first, then
<bos> text <eos> <pad>...; the loss mask counts text and <eos> targets only.
"""
from __future__ import annotations

import numpy as np
import torch

from megamed.config import ModelConfig
from megamed.data.batch import INPUTS, LABELS, MEDIA, MEDIA_FIELDS, MicroBatch
from megamed.data.packing import SpecialIds, TokenBudget, pack_study
from megamed.data.sampler import BatchLayout

PAD, BOS, EOS = 0, 1, 2


class SyntheticStudies:
    """`study(i)` -> dict: row [seq + 1] int64, loss_mask [seq] float32, and for each
    configured modality its input (float32 in [0, 1], zeros when absent) and presence."""

    def __init__(self, cfg: ModelConfig, seed: int, classes: int = 4, branching: int = 4):
        self.cfg, self.seed, self.classes = cfg, seed, classes
        self.encoders = cfg.encoders()
        ids = {name: e.placeholder_id for name, e in self.encoders.items()}
        specials = [PAD, BOS, EOS, *ids.values()]
        if len(set(specials)) != len(specials):
            raise ValueError(f"placeholder ids {ids} collide with each other or with "
                             f"pad/bos/eos ({PAD}, {BOS}, {EOS})")
        self.first_text = max(specials) + 1
        self.findings = self.first_text  # then classes x len(encoders) finding tokens
        text_vocab = cfg.vocab_size - self.first_text
        if text_vocab < classes * max(1, len(self.encoders)) + branching:
            raise ValueError(f"vocab {cfg.vocab_size} too small for {classes} classes per "
                             f"modality after the special ids")
        unused = max(specials) + 1  # eeg/ecg/image ids of modalities not configured
        self.ids = SpecialIds(bos=BOS, eos=EOS, pad=PAD, image=ids.get("image", unused),
                              ecg=ids.get("ecg", unused), eeg=ids.get("eeg", unused))
        self.budget = TokenBudget(**{n: e.tokens for n, e in self.encoders.items()})
        chain = np.random.default_rng([seed, 0x5EED])
        self.successors = self.first_text + chain.integers(0, text_vocab,
                                                           size=(cfg.vocab_size, branching))
        self.templates = {n: np.random.default_rng([seed, 0x1A6E, j]).standard_normal(
            (classes, e.channels, *e.shape)).astype(np.float32)
            for j, (n, e) in enumerate(self.encoders.items()) if e.kind == "image"}

    def _signal(self, name: str, k: int, rng) -> np.ndarray:
        e = self.encoders[name]
        noise = rng.standard_normal((e.channels, *e.shape)).astype(np.float32)
        if e.kind == "image":
            x = self.templates[name][k] + 0.5 * noise
        else:
            t = np.arange(e.shape[0], dtype=np.float32) / e.shape[0]
            phase = np.arange(e.channels, dtype=np.float32)[:, None] / e.channels
            x = np.sin(2 * np.pi * ((2 + 3 * k) * t + phase)) + 0.3 * noise
        return np.clip(0.5 + 0.25 * x, 0.0, 1.0).astype(np.float32)

    def study(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, int(index)])
        names = list(self.encoders)
        choice = int(rng.integers(0, len(names) + 1))  # 0: text only
        k = int(rng.integers(0, self.classes))
        s = self.cfg.seq_length
        length = int(rng.integers(s // 2, s))
        text = np.empty(length, dtype=np.int64)
        if choice:
            text[0] = self.findings + (choice - 1) * self.classes + k
        else:
            text[0] = self.first_text + int(rng.integers(0, self.cfg.vocab_size -
                                                               self.first_text))
        picks = rng.integers(0, self.successors.shape[1], size=length)
        for t in range(1, length):
            text[t] = self.successors[text[t - 1], picks[t]]
        present = [names[choice - 1]] if choice else []
        row, mask = pack_study(text.tolist(), present, s, self.budget, self.ids)
        out = {"row": row, "loss_mask": mask}
        for name, e in self.encoders.items():
            has = name in present
            out[name] = (self._signal(name, k, rng) if has
                         else np.zeros((e.channels, *e.shape), dtype=np.float32))
            out["has_" + name] = has
        return out


class StudySource:
    """Micro batches of `SyntheticStudies` for one DP rank, with only the asked fields
    (the same `micro_batch(step, micro, fields)` as TokenSource and the shard loader)."""

    def __init__(self, studies: SyntheticStudies, layout: BatchLayout, dp_rank: int,
                 device="cpu"):
        self.studies, self.layout, self.dp_rank, self.device = studies, layout, dp_rank, device

    def micro_batch(self, step: int, micro: int, fields: frozenset = INPUTS | LABELS | MEDIA
                    ) -> MicroBatch:
        if not fields & (INPUTS | LABELS | MEDIA):
            return MicroBatch()
        samples = [self.studies.study(i)
                   for i in self.layout.sample_indices(step, self.dp_rank, micro)]

        def stack(key, dtype=None):
            t = torch.from_numpy(np.stack([np.asarray(x[key]) for x in samples]))
            return t.to(self.device if dtype is None else self.device, dtype=dtype)

        rows = stack("row")
        batch = MicroBatch(tokens=rows[:, :-1] if "tokens" in fields else None,
                           targets=rows[:, 1:] if "targets" in fields else None,
                           loss_mask=stack("loss_mask") if "loss_mask" in fields else None)
        for name in self.studies.encoders:
            x, has = MEDIA_FIELDS[name]
            if x in fields:
                setattr(batch, x, stack(name))
            if has in fields:
                setattr(batch, has, stack("has_" + name, torch.bool))
        return batch
