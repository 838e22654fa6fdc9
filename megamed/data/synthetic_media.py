"""Synthetic multimodal studies with learnable structure, for the `tiny-mm` tests and the
`demo` profile before real shards exist.

Sample i depends only on (seed, i). It is text-only, or an image (CT-like volume, the
profile's windows as channels) with text, or an ECG/EEG with text (chosen at random among
the configured modalities). A study has `findings` independent findings, each with a grade
k in [0, classes) drawn per sample, and its input is a sum of the findings' fixed patterns,
each scaled by its grade (from -1 at grade 0 to +1 at the top grade), plus noise:

    image     finding a's pattern is a fixed random volume (per seed and a)
    waveform  finding a's pattern is a sine with a + 1 cycles per patch on every lead

so each grade is a linear function of the input that a patch embedding and the pooled
tokens can read. The report opens with one token per finding naming (modality, finding,
grade), then follows a fixed random bigram chain. The finding tokens are predictable only
by a model that reads the input: a text-only model stays at ln(classes) nats per finding
token, one that reads the input can reach 0; the rest of the report, by any model that
learns the chain.

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
    configured modality its input (float32; images in [0, 1], waveforms of zero mean and
    about unit spread per lead; zeros when absent) and presence."""

    def __init__(self, cfg: ModelConfig, seed: int, classes: int = 4, branching: int = 4,
                 findings: int = 2, blank_media: bool = False):
        # blank_media: the same studies with every input zeros (placeholders and presence
        # kept): the text-only baseline benchmarks/media_ablation.py compares against.
        self.cfg, self.seed, self.classes, self.num_findings = cfg, seed, classes, findings
        self.blank_media = blank_media
        self.encoders = cfg.encoders()
        ids = {name: e.placeholder_id for name, e in self.encoders.items()}
        specials = [PAD, BOS, EOS, *ids.values()]
        if len(set(specials)) != len(specials):
            raise ValueError(f"placeholder ids {ids} collide with each other or with "
                             f"pad/bos/eos ({PAD}, {BOS}, {EOS})")
        self.first_text = max(specials) + 1
        # Finding tokens: findings + (modality * num_findings + finding) * classes + grade.
        self.findings = self.first_text
        text_vocab = cfg.vocab_size - self.first_text
        if cfg.seq_length // 2 < findings:
            raise ValueError(f"seq_length {cfg.seq_length} too short for {findings} findings")
        if text_vocab < classes * findings * max(1, len(self.encoders)) + branching:
            raise ValueError(f"vocab {cfg.vocab_size} too small for {findings} findings x "
                             f"{classes} grades per modality after the special ids")
        unused = max(specials) + 1  # eeg/ecg/image ids of modalities not configured
        self.ids = SpecialIds(bos=BOS, eos=EOS, pad=PAD, image=ids.get("image", unused),
                              ecg=ids.get("ecg", unused), eeg=ids.get("eeg", unused))
        self.budget = TokenBudget(**{n: e.tokens for n, e in self.encoders.items()})
        chain = np.random.default_rng([seed, 0x5EED])
        self.successors = self.first_text + chain.integers(0, text_vocab,
                                                           size=(cfg.vocab_size, branching))
        self.patterns = {n: self._patterns(j, e) for j, (n, e) in
                         enumerate(self.encoders.items())}

    def _patterns(self, j: int, e) -> np.ndarray:
        """[findings, channels, *shape]: each finding's fixed pattern (unit scale)."""
        if e.kind == "image":
            return np.random.default_rng([self.seed, 0x1A6E, j]).standard_normal(
                (self.num_findings, e.channels, *e.shape)).astype(np.float32)
        # a + 1 whole cycles per patch: the same phase in every patch, so one linear patch
        # embedding reads the amplitude wherever the patch sits.
        if 2 * self.num_findings >= e.patch[0]:
            raise ValueError(f"{self.num_findings} findings need patches of more than "
                             f"{2 * self.num_findings} samples (one frequency each below "
                             f"Nyquist), the profile's are {e.patch[0]}")
        t = np.arange(e.shape[0], dtype=np.float32) / e.patch[0]
        waves = np.sin(2 * np.pi * (np.arange(self.num_findings)[:, None] + 1) * t)
        return np.repeat(waves[:, None, :], e.channels, 1).astype(np.float32)

    def _signal(self, name: str, grades: np.ndarray, rng) -> np.ndarray:
        e = self.encoders[name]
        scale = 2.0 * grades / max(1, self.classes - 1) - 1.0  # grade -> [-1, 1]
        x = np.tensordot(scale.astype(np.float32), self.patterns[name], axes=1)
        noise = rng.standard_normal((e.channels, *e.shape)).astype(np.float32)
        x = x / np.sqrt(self.num_findings) + 0.5 * noise
        if e.kind == "image":  # windowed intensities
            return np.clip(0.5 + 0.2 * x, 0.0, 1.0).astype(np.float32)
        # about as data/waveform.py's normalize_leads leaves a lead: zero mean, spread ~0.7
        return (0.8 * x).astype(np.float32)

    def study(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, int(index)])
        names = list(self.encoders)
        choice = int(rng.integers(0, len(names) + 1))  # 0: text only
        grades = rng.integers(0, self.classes, size=self.num_findings)
        s = self.cfg.seq_length
        length = int(rng.integers(s // 2, s))
        text = np.empty(length, dtype=np.int64)
        if choice:
            first = self.findings + ((choice - 1) * self.num_findings +
                                     np.arange(self.num_findings)) * self.classes + grades
            opening = self.num_findings
            text[:opening] = first
        else:
            opening = 1
            text[0] = self.first_text + int(rng.integers(0, self.cfg.vocab_size -
                                                               self.first_text))
        picks = rng.integers(0, self.successors.shape[1], size=length)
        for t in range(opening, length):
            text[t] = self.successors[text[t - 1], picks[t]]
        present = [names[choice - 1]] if choice else []
        row, mask = pack_study(text.tolist(), present, s, self.budget, self.ids)
        out = {"row": row, "loss_mask": mask}
        for name, e in self.encoders.items():
            has = name in present
            out[name] = (self._signal(name, grades, rng) if has and not self.blank_media
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
