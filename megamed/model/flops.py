"""Training FLOPs of the decoder and the encoders, from the config alone. One convention
for MFU (training/metrics.py, benchmarks/mfu.py, tools/plan.py) and for the pipeline
partition, which counts the encoders' cost on the first stage (model/build.py)."""
from __future__ import annotations

from megamed.config import EncoderConfig, ModelConfig


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per decoder token, encoders included (their per-sample FLOPs spread
    over the sample's tokens; see `flops_by_part`)."""
    return sum(flops_by_part(cfg).values())


def flops_by_part(cfg: ModelConfig) -> dict[str, float]:
    """Training FLOPs per decoder token of the decoder and of each configured encoder
    (with its projector). The encoders run on every sample (zeros where a sample lacks
    the modality), so each costs its per-sample FLOPs / seq_length per token."""
    parts = {"decoder": cfg.num_layers * layer_flops_per_token(cfg) +
             6.0 * cfg.hidden_size * cfg.vocab_size}
    for name, e in cfg.encoders().items():
        parts[f"{name}_encoder"] = encoder_flops_per_sample(e, cfg.hidden_size) / \
            cfg.seq_length
    return parts


def encoder_flops_per_sample(e: EncoderConfig, decoder_hidden: int) -> float:
    """6 per matmul parameter and patch (patch embedding, blocks), bidirectional attention
    scores and values 12 * layers * n^2 * hidden, the projector 6 per parameter and token."""
    h, f, n = e.hidden_size, e.ffn_hidden_size, e.num_patches
    matmul = e.patch_numel * h + e.num_layers * (4 * h * h + 2 * h * f)
    projector = h * decoder_hidden + decoder_hidden * decoder_hidden
    return 6.0 * (n * matmul + e.tokens * projector) + 12.0 * e.num_layers * n * n * h


def layer_flops_per_token(cfg: ModelConfig) -> float:
    """One decoder layer's training FLOPs per token: 6 per matmul parameter (forward 2,
    backward 4) plus causal attention scores and values, 6 * 2 * seq * hidden / 2
    (Chinchilla appendix F, halved for the causal mask).

    The convention matters when comparing MFU: the common 6N + 12 L h s (PaLM appendix B)
    counts every parameter (embeddings too) and the whole s x s score matrix; for medllm-32b
    this figure reads about 5% lower (197 vs 207 GFLOP per token), so an MFU quoted here is
    about 5% below one computed that way from the same tokens/s."""
    h, f = cfg.hidden_size, cfg.ffn_hidden_size
    kv = cfg.num_kv_heads * cfg.head_dim
    mlp = (3 if cfg.activation == "swiglu" else 2) * h * f
    return 6.0 * (2 * h * h + 2 * h * kv + mlp) + 6.0 * cfg.seq_length * h


def encoder_cost_in_layers(cfg: ModelConfig) -> float:
    """The encoders' and projectors' training FLOPs per sample in units of one decoder
    layer's per sample: what the first pipeline stage runs besides its decoder layers."""
    encoders = sum(encoder_flops_per_sample(e, cfg.hidden_size)
                   for e in cfg.encoders().values())
    return encoders / (layer_flops_per_token(cfg) * cfg.seq_length)
