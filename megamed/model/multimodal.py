"""The first stage's media path: each modality's encoder and projector, and placeholder
expansion into the decoder's token embeddings.

A packed row (data/packing.py) reserves `tokens` positions holding the modality's
placeholder id (`<image>`, `<ecg>`, `<eeg>`) for every modality the sample has; those
positions get the projected encoder tokens instead of the placeholder's embedding. The
count per modality is fixed, so every row keeps the profile's sequence length and pipeline
stages exchange fixed shapes. A sample may lack any modality (no placeholders, its
`present` flag False); the encoders still run on every row (zeros where absent) so that
every parameter is used in every micro batch and ZeRO-3 gathers the same units on all
ranks; absent rows' outputs are dropped.

Every parameter is tagged with its `part` (image_encoder, waveform_encoder, projector)
for the per-part gradient norms and the freeze options; the decoder's are untagged.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from megamed.config import ModelConfig
from megamed.model.encoders import Encoder, Projector
from megamed.parallel.random import Recomputation, RNGTracker

PARTS = ("decoder", "image_encoder", "waveform_encoder", "projector")


def part_of(p: nn.Parameter) -> str:
    """Which part of the model a parameter belongs to (one of PARTS)."""
    return getattr(p, "part", "decoder")


class MediaEmbedding(nn.Module):
    """Encoders and projectors of the configured modalities.

    forward(tokens [b, s], media {modality: (inputs [b, C, *shape] or None, present [b]
    bool or None)}) -> (embeddings [b, s, h], where [b, s] bool): the modality embeddings
    at their placeholder positions (zeros elsewhere), replicated across TP."""

    def __init__(self, cfg: ModelConfig, tp_group, sequence_parallel: bool,
                 rng: Optional[RNGTracker], recomputation: Recomputation, device=None,
                 dtype=None, recompute: str = "none", recompute_every: int = 1):
        super().__init__()
        self.cfg, self.device = cfg, device
        self.encoders, self.projectors = nn.ModuleDict(), nn.ModuleDict()
        for name, e in cfg.encoders().items():
            self.encoders[name] = Encoder(e, cfg, tp_group, sequence_parallel, rng,
                                          recomputation, device, dtype, recompute,
                                          recompute_every)
            self.projectors[name] = Projector(e.hidden_size, cfg.hidden_size, tp_group,
                                              cfg.init_std, device, dtype)
            part = "image_encoder" if e.kind == "image" else "waveform_encoder"
            for p in self.encoders[name].parameters():
                p.part = part
            for p in self.projectors[name].parameters():
                p.part = "projector"

    def blocks(self) -> list[nn.Module]:
        """Every encoder block in forward order (ZeRO-3 units)."""
        return [b for enc in self.encoders.values() for b in enc.blocks.values()]

    def forward(self, tokens: torch.Tensor, media: dict) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = tokens.shape
        out = torch.zeros(b, s, self.cfg.hidden_size, device=tokens.device,
                          dtype=self.projectors[next(iter(self.projectors))].fc1.weight.dtype)
        where = torch.zeros(b, s, dtype=torch.bool, device=tokens.device)
        for name, e in self.cfg.encoders().items():
            x, present = media.get(name, (None, None))
            if x is None:  # a text-only source: every row lacks this modality
                x = torch.zeros(b, e.channels, *e.shape, device=tokens.device)
            if present is None:
                present = torch.zeros(b, dtype=torch.bool, device=tokens.device)
            found = tokens == e.placeholder_id
            _check_placeholders(name, found.sum(1), present, e.tokens)
            emb = self.projectors[name](self.encoders[name](x))  # [b, tokens, h]
            mask = found & present[:, None]
            out = out.masked_scatter(mask[..., None], emb[present].to(out.dtype))
            where = where | mask
        return out, where


def _check_placeholders(name: str, counts: torch.Tensor, present: torch.Tensor,
                        tokens: int) -> None:
    """Each row holds `tokens` placeholders where it has the modality, none where not
    (otherwise masked_scatter would silently shift embeddings between rows)."""
    expected = present.long() * tokens
    if not torch.equal(counts, expected):
        rows = (counts != expected).nonzero().flatten().tolist()
        raise ValueError(f"{name}: rows {rows} of the micro batch hold "
                         f"{counts[rows].tolist()} <{name}> placeholders, expected {tokens} "
                         f"where the sample has the modality and 0 where not")
