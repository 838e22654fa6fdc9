"""One function builds a rank's model chunks: for training (real groups and devices), and
on the `meta` device for the memory calculator and the checkpoint converter (shapes only)."""
from __future__ import annotations

from typing import Optional

import torch

from megamed.config import Config
from megamed.model.flops import encoder_cost_in_layers
from megamed.model.multimodal import MediaEmbedding, part_of
from megamed.model.transformer import PRECISION_DTYPES, DecoderStage
from megamed.parallel import collectives as C
from megamed.parallel.pipeline import partition
from megamed.parallel.random import Recomputation, RNGTracker

# train.freeze -> the parts that keep training
TRAINED_PARTS = {"none": {"decoder", "image_encoder", "waveform_encoder", "projector"},
                 "encoders": {"decoder", "projector"},
                 "all-but-projectors": {"projector"}}
from megamed.parallel.tensor import initialize_parameters


def build_chunks(cfg: Config, tp_group, pp_rank: int, device, rng: Optional[RNGTracker] = None,
                 seed: Optional[int] = None) -> list[DecoderStage]:
    """The model chunks of pipeline stage `pp_rank` (one per virtual stage; the whole
    decoder at PP=1) in the run's parameter dtype, with its sequence parallelism and
    recomputation; initialised from per-parameter seeds when `seed` is given."""
    P, V, m, t = cfg.parallel.pp, cfg.parallel.virtual_stages, cfg.model, cfg.train
    dtype, sp = PRECISION_DTYPES[t.precision], cfg.parallel.sequence_parallel
    layers = layer_partition(cfg)[pp_rank]
    chunks = []
    for c in range(V):
        first = pp_rank == 0 and c == 0
        recomputation, media = Recomputation(rng), None
        if first and m.encoders():  # encoders and projectors live with the embedding
            media = MediaEmbedding(m, tp_group, sp, rng, recomputation, device, dtype,
                                   t.recompute, t.recompute_every)
        chunk = DecoderStage(m, tp_group, layers[c],
                             first, pp_rank == P - 1 and c == V - 1, sp, rng, device, dtype,
                             t.recompute, t.recompute_every, media, recomputation)
        if seed is not None:
            initialize_parameters(chunk, seed)
        freeze(chunk, t.freeze)
        chunks.append(chunk)
    return chunks


def layer_partition(cfg: Config) -> list[list[range]]:
    """[stage][chunk] -> decoder layers, the encoders' FLOPs counted on stage 0: the one
    split the trainer, the memory calculator and the planner use."""
    m, p = cfg.model, cfg.parallel
    return partition(m.num_layers, p.pp, p.virtual_stages, encoder_cost_in_layers(m))


def freeze(chunk: DecoderStage, option: str) -> None:
    """`train.freeze`: parameters of the parts that do not train get requires_grad False,
    so they have no gradient buffer and no optimizer state."""
    for p in chunk.parameters():
        p.requires_grad_(part_of(p) in TRAINED_PARTS[option])


def meta_chunks(cfg: Config, pp_rank: int) -> list[DecoderStage]:
    """Stage `pp_rank`'s chunks on the meta device, as TP rank 0 holds them (every TP rank
    holds the same shapes): no memory, no processes."""
    # Kernel choice does not change shapes; the torch one needs no device to resolve.
    cfg = cfg.replace(model={"attention_backend": "torch", "norm_backend": "torch"})
    return build_chunks(cfg, C.ShapeGroup(cfg.parallel.tp, 0), pp_rank, torch.device("meta"),
                        RNGTracker())
