"""Modality encoders: a ViT over CT/MR volumes or 2D images, and the same transformer over
multi-lead ECG/EEG waveforms. Both are built from the decoder's own TP `Block` with
bidirectional attention (same kernel backends, same TP sharding, sequence parallelism and
recomputation), so at TP=1 each is an ordinary PyTorch ViT.

    image     [b, C, (D,) H, W]  C = CT windows / MR sequences as channels
              -> patches [b, n = prod(shape / patch), C * prod(patch)]   (3D patch embedding,
                 as M3D-LaMed does on 32x256x256 with 4x16x16 patches)
    waveform  [b, leads, samples] -> patches [b, n = leads * samples / p, p]
              (1D patches across time, every lead separately; a lead embedding tells them
              apart, a time embedding orders them)

then a linear patch embedding + learned positions, `num_layers` blocks, a final LayerNorm,
and average pooling of the token grid by `pool` (a fixed number of tokens per sample; no
parameters, so nothing replicated runs on the full sequence under SP).

Images arrive in [0, 1] and are centred first, (x - 0.5) / 0.25, as ViTs normalise pixels:
raw, their constant part dominated every patch embedding, the LayerNorms after it scaled
the content away, and the decoder learned to ignore the media (the finding-token loss was
the same with the inputs zeroed). Waveforms arrive standardised per lead already.

Sequence parallelism: with it on, each TP rank runs the blocks on its 1/tp of the patches,
exactly as the decoder does; the pooled output is replicated on every TP rank.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from megamed.config import EncoderConfig, ModelConfig, encoder_block_config
from megamed.model.transformer import Block, Norm
from megamed.parallel import collectives as C
from megamed.parallel.random import Recomputation, RNGTracker
from megamed.parallel.tensor import ColumnParallelLinear, InitSpec, RowParallelLinear, _param

# Images arrive in [0, 1] (CT windows, MR percentiles: data/preprocess.py) and are centred
# and scaled to about unit spread before the patch embedding. Waveforms arrive with zero
# mean and unit spread per lead (data/waveform.py: normalize_leads) and are used as they are.
IMAGE_MEAN, IMAGE_STD = 0.5, 0.25


def patchify(x: torch.Tensor, e: EncoderConfig) -> torch.Tensor:
    """image [b, C, *shape] -> [b, n, C * prod(patch)] (patches in raster order of the grid);
    waveform [b, leads, samples] -> [b, leads * samples / p, p] (lead-major)."""
    b = x.shape[0]
    if e.kind == "waveform":
        return x.reshape(b, e.channels * e.grid[1], e.patch[0])
    k = len(e.shape)
    cut = [d for g, p in zip(e.grid, e.patch) for d in (g, p)]
    x = x.reshape(b, e.channels, *cut)                       # [b, C, g1, p1, g2, p2, ...]
    grid_dims = [2 + 2 * i for i in range(k)]
    patch_dims = [3 + 2 * i for i in range(k)]
    x = x.permute(0, *grid_dims, 1, *patch_dims)             # [b, g..., C, p...]
    return x.reshape(b, e.num_patches, e.patch_numel)


class Encoder(nn.Module):
    """forward(x [b, C, *shape]) -> [b, tokens, hidden], replicated across TP."""

    def __init__(self, e: EncoderConfig, decoder: ModelConfig, tp_group,
                 sequence_parallel: bool, rng: Optional[RNGTracker], recomputation: Recomputation,
                 device=None, dtype=None, recompute: str = "none", recompute_every: int = 1):
        super().__init__()
        self.e, self.tp_group, self.sequence_parallel = e, tp_group, sequence_parallel
        self.recomputation, self.recompute_every = recomputation, recompute_every
        self.recompute_full = recompute == "full"
        cfg = encoder_block_config(e, decoder)
        h, std = e.hidden_size, cfg.init_std
        # Replicated across TP: under SP each rank's gradient covers its part of the patches
        # and is summed over TP, like the decoder's learned positions.
        self.patch_weight = _param((h, e.patch_numel), InitSpec((h, e.patch_numel), std=std),
                                   dtype, device)
        self.patch_bias = _param((h,), InitSpec((h,), "zeros"), dtype, device)
        if e.kind == "image":
            self.positions = _param((e.num_patches, h), InitSpec((e.num_patches, h), std=std),
                                    dtype, device)
        else:
            leads, steps = e.grid
            self.lead_embedding = _param((leads, h), InitSpec((leads, h), std=std), dtype,
                                         device)
            self.time_embedding = _param((steps, h), InitSpec((steps, h), std=std), dtype,
                                         device)
        core = recomputation if recompute == "selective" else None
        self.blocks = nn.ModuleDict({str(i): Block(cfg, tp_group, sequence_parallel, rng,
                                                   device, dtype, core, causal=False)
                                     for i in range(e.num_layers)})
        self.final_norm = Norm(cfg, device, dtype)

    def position_table(self) -> torch.Tensor:
        """[n, hidden] in the order of `patchify`."""
        if self.e.kind == "image":
            return self.positions
        return (self.lead_embedding[:, None, :] + self.time_embedding[None, :, :]).flatten(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.patch_weight.dtype)
        if self.e.kind == "image":
            x = (x - IMAGE_MEAN) / IMAGE_STD
        patches = patchify(x, self.e)
        y = F.linear(patches, self.patch_weight, self.patch_bias) + self.position_table()
        if self.sequence_parallel:
            y = C.split(y, self.tp_group, 1)
        blocks = list(self.blocks.values())
        if self.recompute_full:
            n = self.recompute_every
            for group in (blocks[i:i + n] for i in range(0, len(blocks), n)):
                y = self.recomputation.run(_run_blocks, y, group)
        else:
            y = _run_blocks(y, blocks)
        y = self.final_norm(y)
        if self.sequence_parallel:
            # The pooling and projector after this run replicated on every TP rank.
            y = C.gather_from_region(y, self.tp_group, 1)
        return self.pool(y)

    def pool(self, y: torch.Tensor) -> torch.Tensor:
        """[b, n, h] -> [b, tokens, h]: average over `pool`-sized cells of the token grid."""
        b, _, h = y.shape
        grid = y.transpose(1, 2).reshape(b, h, *self.e.grid)
        pool = F.avg_pool3d if len(self.e.grid) == 3 else F.avg_pool2d
        # fp32: CPU pooling has no bf16 kernel, and a mean of many terms wants it anyway.
        out = pool(grid.float(), kernel_size=self.e.pool, stride=self.e.pool)
        return out.flatten(2).transpose(1, 2).to(y.dtype)


def _run_blocks(y: torch.Tensor, blocks: list) -> torch.Tensor:
    for block in blocks:
        y = block(y, None)
    return y


class Projector(nn.Module):
    """Encoder hidden -> decoder hidden: column-parallel linear (with bias), GELU,
    row-parallel linear (no bias: a replicated bias outside SP would be summed over TP
    with the SP-replicated gradients). [b, tokens, h_enc] -> [b, tokens, h], replicated."""

    def __init__(self, in_features: int, hidden: int, tp_group, std: float, device=None,
                 dtype=None):
        super().__init__()
        self.fc1 = ColumnParallelLinear(in_features, hidden, tp_group, bias=True, std=std,
                                        device=device, dtype=dtype)
        self.fc2 = RowParallelLinear(hidden, hidden, tp_group, bias=False, std=std,
                                     device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))
