"""The decoder: embedding, N pre-norm blocks, final norm, vocab-parallel output and loss.

Written as a plain model whose linear layers happen to be TP layers; at TP=1 it is an
ordinary PyTorch decoder. One `DecoderStage` holds the layers one pipeline stage owns (all of
them at PP=1); layers keep their global index in their name (`layers.17.mlp.w1.weight`) so
names, and therefore initial values, do not depend on the layout.

Both architecture families come from config: RMSNorm + SwiGLU + RoPE (Llama-style,
`medllm-32b`) and LayerNorm + GELU + learned positions with biases (GPT-2-style, `seed-15b`).
Activations are [batch, seq, hidden]; with sequence parallelism [batch, seq / tp, hidden]
outside the TP regions (Korthikanti et al. 2022, section 4.2.2): norms and dropout run on this
rank's part of the sequence, column-parallel layers all-gather it and row-parallel layers
reduce-scatter back.

Activation recomputation (Korthikanti et al. 2022, section 5): `selective` re-runs only the
attention core (softmax(QK^T)V: large activations, few FLOPs); `full` keeps only the input
of every group of `recompute_every` blocks and re-runs the group in backward.

Mixed precision: parameters and activations may be bf16/fp16. Norm statistics and the
attention softmax are fp32 inside every backend's kernels (torch's F.rms_norm/F.layer_norm
and SDPA accumulate in fp32 for low-precision inputs, as do ours), RoPE and the loss
explicitly so.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from megamed.config import ModelConfig
from megamed.kernels.backend import attention_fn, layer_norm_fn, resolve_backend, rms_norm_fn
from megamed.parallel import collectives as C
from megamed.parallel.random import Recomputation, RNGTracker
from megamed.parallel.tensor import (ColumnParallelLinear, InitSpec, RowParallelLinear,
                                     VocabParallelEmbedding, _param, column_parallel_linears,
                                     vocab_parallel_cross_entropy)

# Parameter and activation dtype of each `train.precision`.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Norm(nn.Module):
    """RMSNorm or LayerNorm over the last dim, replicated across TP; the kernel comes from
    the `norm_backend` switch (torch | triton | apex)."""

    def __init__(self, cfg: ModelConfig, device=None, dtype=None):
        super().__init__()
        h, self.eps, self.kind = cfg.hidden_size, cfg.norm_eps, cfg.norm
        backend = resolve_backend(cfg.norm_backend, "norm", device or "cpu")
        self.weight = _param((h,), InitSpec((h,), "ones"), dtype, device)
        if self.kind == "layernorm":
            self.bias = _param((h,), InitSpec((h,), "zeros"), dtype, device)
            self.fn = layer_norm_fn(backend)
        else:
            self.fn = rms_norm_fn(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            return self.fn(x, self.weight, self.bias, self.eps)
        return self.fn(x, self.weight, self.eps)


def rope_tables(seq_length: int, head_dim: int, theta: float, device=None):
    """cos and sin tables [seq, head_dim] for rotary embeddings (Su et al. 2021), fp32."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(seq_length, device=device).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates halves of the head dim (GPT-NeoX / Llama convention). x: [b, heads, s, d]."""
    s = x.shape[2]
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos[:s] + rotated.float() * sin[:s]).to(x.dtype)


class Attention(nn.Module):
    """Self-attention with grouped-query heads split over TP: this rank holds
    num_heads / tp query heads and num_kv_heads / tp KV heads. Causal in the decoder,
    bidirectional in the encoders (`causal=False`), through the same kernel backends."""

    def __init__(self, cfg: ModelConfig, tp_group, out_std: float, sequence_parallel: bool,
                 rng: Optional[RNGTracker], device=None, dtype=None,
                 recompute_core: Optional[Recomputation] = None, causal: bool = True):
        super().__init__()
        self.causal = causal
        tp = C.group_size(tp_group)
        hd, h = cfg.head_dim, cfg.hidden_size
        self.local_heads, self.local_kv_heads = cfg.num_heads // tp, cfg.num_kv_heads // tp
        self.head_dim, self.dropout, self.rng = hd, cfg.attention_dropout, rng
        self.recompute_core = recompute_core
        self.tp_group, self.sequence_parallel = tp_group, sequence_parallel
        kw = dict(bias=cfg.add_bias, std=cfg.init_std, sequence_parallel=sequence_parallel,
                  device=device, dtype=dtype, gather_input=False)
        self.wq = ColumnParallelLinear(h, cfg.num_heads * hd, tp_group, **kw)
        self.wk = ColumnParallelLinear(h, cfg.num_kv_heads * hd, tp_group, **kw)
        self.wv = ColumnParallelLinear(h, cfg.num_kv_heads * hd, tp_group, **kw)
        self.wo = RowParallelLinear(cfg.num_heads * hd, h, tp_group, bias=cfg.add_bias,
                                    std=out_std, sequence_parallel=sequence_parallel,
                                    device=device, dtype=dtype)
        self.attend = attention_fn(resolve_backend(cfg.attention_backend, "attention",
                                                   device or "cpu"))

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, n, self.head_dim).transpose(1, 2)  # [b, heads, s, d]

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v: [b, heads, s, d] -> [b, heads, s, d]."""
        if self.training and self.dropout > 0:
            # Sharded heads: dropout masks come from the per-TP-rank stream.
            with self.rng.fork():
                return F.scaled_dot_product_attention(
                    q, k, v, dropout_p=self.dropout, is_causal=self.causal,
                    enable_gqa=self.local_heads != self.local_kv_heads)
        return self.attend(q, k, v, self.causal, None)

    def forward(self, x: torch.Tensor, rope: Optional[tuple]) -> torch.Tensor:
        q, k, v = ColumnParallelLinear.shared_input(x, self.wq, self.wk, self.wv)
        q = self._heads(q, self.local_heads)
        k, v = self._heads(k, self.local_kv_heads), self._heads(v, self.local_kv_heads)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.recompute_core is not None:
            out = self.recompute_core.run(self.core, q, k, v)
        else:
            out = self.core(q, k, v)
        b, _, s, _ = out.shape
        return self.wo(out.transpose(1, 2).reshape(b, s, self.local_heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU (w2(silu(w1 x) * w3 x), Shazeer 2020) or GELU (fc2(gelu(fc1 x)))."""

    def __init__(self, cfg: ModelConfig, tp_group, out_std: float, sequence_parallel: bool,
                 device=None, dtype=None):
        super().__init__()
        h, f = cfg.hidden_size, cfg.ffn_hidden_size
        kw = dict(bias=cfg.add_bias, sequence_parallel=sequence_parallel, device=device,
                  dtype=dtype)
        self.tp_group, self.sequence_parallel = tp_group, sequence_parallel
        self.swiglu = cfg.activation == "swiglu"
        self.w1 = ColumnParallelLinear(h, f, tp_group, std=cfg.init_std, gather_input=False,
                                       **kw)
        if self.swiglu:
            self.w3 = ColumnParallelLinear(h, f, tp_group, std=cfg.init_std,
                                           gather_input=False, **kw)
        self.w2 = RowParallelLinear(f, h, tp_group, std=out_std, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            gate, up = ColumnParallelLinear.shared_input(x, self.w1, self.w3)
            return self.w2(F.silu(gate) * up)
        hidden = ColumnParallelLinear.shared_input(x, self.w1)[0]
        return self.w2(F.gelu(hidden, approximate="tanh"))


class SequenceDropout(nn.Dropout):
    """Dropout on activations outside the TP regions. Replicated across TP they draw from the
    default stream (same mask on every TP rank); sequence-parallel, each TP rank holds a
    different part of the sequence and draws from the per-rank stream (Megatron forks the
    tensor-parallel RNG for the whole SP region)."""

    def __init__(self, p: float, sequence_parallel: bool, rng: Optional[RNGTracker]):
        super().__init__(p)
        self.sequence_parallel, self.rng = sequence_parallel, rng

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.sequence_parallel and self.training and self.p > 0):
            return super().forward(x)
        with self.rng.fork():
            return super().forward(x)


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, tp_group, sequence_parallel: bool,
                 rng: Optional[RNGTracker], device=None, dtype=None,
                 recompute_core: Optional[Recomputation] = None, causal: bool = True):
        super().__init__()
        # GPT-2 / Megatron: residual-branch outputs scaled by 1/sqrt(2 x layers) at init.
        out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
        self.attention_norm = Norm(cfg, device, dtype)
        self.attention = Attention(cfg, tp_group, out_std, sequence_parallel, rng, device, dtype,
                                   recompute_core, causal)
        self.mlp_norm = Norm(cfg, device, dtype)
        self.mlp = MLP(cfg, tp_group, out_std, sequence_parallel, device, dtype)
        self.hidden_dropout = SequenceDropout(cfg.hidden_dropout, sequence_parallel, rng)

    def forward(self, x: torch.Tensor, rope: Optional[tuple]) -> torch.Tensor:
        x = x + self.hidden_dropout(self.attention(self.attention_norm(x), rope))
        return x + self.hidden_dropout(self.mlp(self.mlp_norm(x)))


class DecoderStage(nn.Module):
    """The part of the decoder one pipeline stage (or model chunk) owns.

    forward(x, targets): x is token ids [b, s] on the stage with the embedding, else hidden
    states [b, s, h] ([b, s / tp, h] with sequence parallelism); returns per-token loss
    [b, s] (fp32) on the stage with the output layer, else hidden states for the next stage.

    recompute: none | selective | full; `recompute_every` blocks form one recomputed group.
    media: the encoders and projectors (model/multimodal.py) on the chunk with the
    embedding, built with this chunk's `recomputation`.
    """

    def __init__(self, cfg: ModelConfig, tp_group, layers: Iterable[int],
                 has_embedding: bool = True, has_output: bool = True,
                 sequence_parallel: bool = False, rng: Optional[RNGTracker] = None,
                 device=None, dtype=None, recompute: str = "none", recompute_every: int = 1,
                 media: Optional[nn.Module] = None,
                 recomputation: Optional[Recomputation] = None):
        super().__init__()
        self.cfg, self.tp_group, self.sequence_parallel = cfg, tp_group, sequence_parallel
        self.rng, self.recompute_every = rng, recompute_every
        self.recompute_full = recompute == "full"
        # This chunk's (ZeRO-3 reads it); shared with the encoders `media` holds.
        self.recomputation = recomputation or Recomputation(rng)
        if rng is None and (cfg.attention_dropout > 0 or
                            (sequence_parallel and cfg.hidden_dropout > 0)):
            raise ValueError("dropout on TP-sharded activations needs the RNG tracker: pass "
                             "rng=seed_streams(seed, tp_rank, pp_rank)")
        tp = C.group_size(tp_group)
        self.padded_vocab = cfg.padded_vocab_size(tp)
        self.has_embedding, self.has_output = has_embedding, has_output
        if has_embedding:
            self.embedding = nn.Module()
            self.embedding.tokens = VocabParallelEmbedding(
                self.padded_vocab, cfg.vocab_size, cfg.hidden_size, tp_group, cfg.init_std,
                sequence_parallel, dtype, device)
            if cfg.position_embedding == "learned":
                self.embedding.positions = _param(
                    (cfg.seq_length, cfg.hidden_size),
                    InitSpec((cfg.seq_length, cfg.hidden_size), std=cfg.init_std), dtype, device)
            self.embedding_dropout = SequenceDropout(cfg.hidden_dropout, sequence_parallel, rng)
            if media is not None:
                self.media = media  # before the blocks: parameters in order of use
        core = self.recomputation if recompute == "selective" else None
        self.layers = nn.ModuleDict({str(i): Block(cfg, tp_group, sequence_parallel, rng,
                                                   device, dtype, core)
                                     for i in layers})
        if has_output:
            self.final_norm = Norm(cfg, device, dtype)
            if not (cfg.tie_embeddings and has_embedding):
                # Tied but on another stage: a copy initialised from the embedding's seed,
                # kept equal by all-reducing its gradient with the first stage's.
                key = "embedding.tokens.weight" if cfg.tie_embeddings else None
                self.output = ColumnParallelLinear(
                    cfg.hidden_size, self.padded_vocab, tp_group, std=cfg.init_std,
                    sequence_parallel=sequence_parallel, valid_rows=cfg.vocab_size,
                    init_key=key, device=device, dtype=dtype)
                if cfg.tie_embeddings:
                    # Counted once (in the parameter count and the gradient norm): on the
                    # first stage.
                    self.output.weight.pipeline_duplicate = True
        if cfg.position_embedding == "rope":
            cos, sin = rope_tables(cfg.seq_length, cfg.head_dim, cfg.rope_theta, device)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    # -- what parallel/ needs from a chunk (the `ModelChunk` contract in parallel/data.py) --

    def tied_parameters(self) -> list[nn.Parameter]:
        """This chunk's copies of a weight that another pipeline stage also holds: with tied
        embeddings and PP > 1, the embedding on the first stage and the output layer's copy
        on the last. Their gradients are summed over the embedding group."""
        if not self.cfg.tie_embeddings or (self.has_embedding and self.has_output):
            return []  # untied, a middle stage, or PP = 1 (the embedding is used directly)
        found = [self.embedding.tokens.weight] if self.has_embedding else []
        return found + ([self.output.weight] if hasattr(self, "output") else [])

    def sharding_units(self) -> list[nn.Module]:
        """ZeRO-3's units in forward order: this chunk itself first (its parameters outside
        the other units: embedding, final norm, output, patch embeddings, projectors), then
        each encoder block, then each decoder block, the frozen ones left out."""
        media = self.media.blocks() if hasattr(self, "media") else []
        blocks = media + list(self.layers.values())
        # A frozen block (train.freeze) is no unit: it stays whole, nothing to shard.
        return [self] + [b for b in blocks if any(p.requires_grad for p in b.parameters())]

    def embed(self, tokens: torch.Tensor, media: Optional[dict] = None) -> torch.Tensor:
        """tokens [b, s] -> [b, s, h] ([b, s / tp, h] under SP); with encoders, each
        placeholder position holds its modality's embedding (`media`: see
        MediaEmbedding)."""
        x = self.embedding.tokens(tokens)
        if hasattr(self, "media"):
            inserted, where = self.media(tokens, media or {})
            if self.sequence_parallel:
                # Replicated before, this rank's part of the sequence after: backward
                # all-gathers, so the projectors get the gradient of every position.
                inserted = C.scatter_to_region(inserted, self.tp_group, 1)
                where = C.split(where, self.tp_group, 1)
            x = torch.where(where[..., None], inserted, x)
        if self.cfg.position_embedding == "learned":
            positions = self.embedding.positions[: tokens.shape[1]]
            if self.sequence_parallel:
                positions = C.split(positions, self.tp_group, 0)
            x = x + positions
        return self.embedding_dropout(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Local logits [b, s, padded_vocab / tp]."""
        x = self.final_norm(x)
        if hasattr(self, "output"):
            return self.output(x)
        return column_parallel_linears(x, [self.embedding.tokens.weight], [None], self.tp_group,
                                       self.sequence_parallel)[0]

    def forward(self, x: torch.Tensor, targets: Optional[torch.Tensor] = None,
                media: Optional[dict] = None) -> torch.Tensor:
        if self.has_embedding:
            x = self.embed(x, media)
        rope = (self.rope_cos, self.rope_sin) if self.cfg.position_embedding == "rope" else None
        blocks = list(self.layers.values())
        if self.recompute_full:
            n = self.recompute_every
            for group in (blocks[i:i + n] for i in range(0, len(blocks), n)):
                x = self.recomputation.run(_run_blocks, x, group, rope)
        else:
            x = _run_blocks(x, blocks, rope)
        if not self.has_output:
            return x
        logits = self.logits(x)
        if targets is None:
            return logits
        return vocab_parallel_cross_entropy(logits, targets, self.tp_group, self.cfg.vocab_size)


def _run_blocks(x: torch.Tensor, blocks: list, rope: Optional[tuple]) -> torch.Tensor:
    for block in blocks:
        x = block(x, rope)
    return x
