"""Capacity planning: memory per GPU, communication per step and time to train of one layout,
derived from the same source as the training run. `tools/plan.py` is its command line.

Memory per rank, for the busiest pipeline stage:
  params, main_grads, optimizer  the exact calculator (`memory.optimizer_state_per_rank`):
                                 the real model's chunks built on the meta device, bucketed
                                 and padded as `parallel/data.py` does, in the profile's
                                 dtypes (fp32 parameters have no separate master copy) and
                                 ZeRO stage (3: shards plus the units gathered at once);
  activations                    what autograd saves for backward (`activation_bytes`), per
                                 micro batch from the layers' own saved tensors, times the
                                 micro batches the schedule keeps in flight on that stage
                                 (from the schedule itself, `pipeline.dry_run`).

Communication per step and GPU, in bytes each GPU sends (ring algorithms: an all-reduce of
S bytes over n ranks sends 2 S (n-1)/n, an all-gather or reduce-scatter S (n-1)/n):
  TP  per layer and micro batch, [mb, s, h] tensors: without sequence parallelism 2
      all-reduces forward and 2 backward; with it 2 all-gathers + 2 reduce-scatters forward
      and 2 reduce-scatters + 4 all-gathers backward (2 re-gather the input shards for the
      weight gradients); full recomputation repeats the forward's; plus the embedding, the
      output layer, the loss's three [mb, s] fp32 all-reduces and the TP sum of
      sequence-parallel replicated gradients;
  PP  each stage boundary sends [mb, s / tp (SP), h] forward and its gradient backward;
  DP  ZeRO-0/1 all-reduce the fp32 gradients, ZeRO-2 reduce-scatters them, ZeRO-1/2
      all-gather the updated parameters, ZeRO-3 gathers parameters for every micro batch's
      forward and backward and reduce-scatters its gradients; tied embeddings on two stages
      all-reduce their gradient.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from megamed.config import Config, ConfigError, ModelConfig, encoder_block_config, resolve
from megamed.hardware import GPU
from megamed.model.build import layer_partition
from megamed.parallel.pipeline import dry_run
from megamed.training.memory import optimizer_state_per_rank

GB = 1e9
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32, INDEX, MASK = 4, 8, 1  # statistics and losses; token ids (int64); masks (bool)


@dataclass(frozen=True)
class Kernels:
    """What the kernels save, which depends on the backends the run resolves. Norms:
    torch's RMSNorm decomposes and keeps two fp32 [rows, h] tensors (its fp32 input and the
    normalised input); our Triton and apex norms keep the input and the fp32 statistics.
    Attention: torch's SDPA returns its output in [b, s, heads, d] memory order, which the
    output projection reads as a view; our Triton kernel returns [b, heads, s, d], so the
    projection keeps a copy of it besides the one the kernel keeps."""
    norm: str = "triton"
    attention: str = "triton"

    @staticmethod
    def for_device(m: ModelConfig, device_type: str) -> "Kernels":
        auto = "triton" if device_type == "cuda" else "torch"
        return Kernels(auto if m.norm_backend == "auto" else m.norm_backend,
                       auto if m.attention_backend == "auto" else m.attention_backend)


def _norm_bytes(m: ModelConfig, rows: int, e: int, kernels: Kernels) -> int:
    """Saved by one norm over [rows, h]."""
    stats = (2 if m.norm == "layernorm" else 1) * rows * FP32
    if kernels.norm == "torch" and m.norm == "rmsnorm":
        return 2 * rows * m.hidden_size * FP32 + rows * FP32
    return rows * m.hidden_size * e + stats


def layer_activation_bytes(cfg: Config, kernels: Kernels) -> int:
    """Bytes one block saves for backward for one micro batch (no full recomputation).

    With n = mb x s tokens, t = TP, q = t under sequence parallelism else 1, e = the
    activation size, kv = KV heads x head dim, f = the FFN width: two norms on [n / q, h];
    the column layers' input shards (n h / q each, attention and MLP: the gathered [n, h] is
    not kept); q, k, v after RoPE (n (h + 2 kv) / t) and the attention output (n h / t; see
    `Kernels` for a second copy); flash attention's fp32 log-sum-exp (n a / t) but
    no s x s scores; SwiGLU's gate, up, silu(gate) and their product (4 n f / t; GELU: 2);
    hidden dropout masks when p > 0. Selective recomputation keeps q, k, v and the core's
    output but not the log-sum-exp."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    n, tp, e = t.micro_batch * m.seq_length, p.tp, BYTES[t.precision]
    q = tp if p.sequence_parallel else 1
    kv = m.num_kv_heads * m.head_dim
    norms = 2 * _norm_bytes(m, n // q, e, kernels)
    inputs = 2 * n * m.hidden_size // q * e
    attention = n * (2 * m.hidden_size + 2 * kv) // tp * e
    if t.recompute != "selective":
        attention += n * m.num_heads // tp * FP32
        if kernels.attention == "triton":
            attention += n * m.hidden_size // tp * e
    mlp = (4 if m.activation == "swiglu" else 2) * n * m.ffn_hidden_size // tp * e
    dropout = 2 * n * m.hidden_size // q * MASK if m.hidden_dropout > 0 else 0
    return norms + inputs + attention + mlp + dropout


def chunk_activation_bytes(cfg: Config, layers: int, has_embedding: bool, has_output: bool,
                           kernels: Kernels) -> int:
    """Bytes one model chunk saves for one micro batch: its blocks (under full
    recomputation only each group's input [n / q, h]) plus the embedding's token ids and
    masks and the output's final norm, input shard, fp32 softmax [n, vocab / t] and
    targets."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    n, tp, e = t.micro_batch * m.seq_length, p.tp, BYTES[t.precision]
    q = tp if p.sequence_parallel else 1
    if t.recompute == "full":
        groups = -(-layers // t.recompute_every)
        total = groups * n * m.hidden_size // q * e
    else:
        total = layers * layer_activation_bytes(cfg, kernels)
    if has_embedding:
        total += media_activation_bytes(cfg, kernels)
        total += n * INDEX + (n * MASK if tp > 1 else 0)
        total += n * m.hidden_size // q * MASK if m.hidden_dropout > 0 else 0
    if has_output:
        total += _norm_bytes(m, n // q, e, kernels) + n * m.hidden_size // q * e
        total += n * m.padded_vocab_size(tp) // tp * FP32 + n * (INDEX + MASK)
    return total


def media_activation_bytes(cfg: Config, kernels: Kernels) -> int:
    """Bytes the encoders and projectors of the first chunk save for one micro batch: per
    encoder its patches (the patch embedding's input), its blocks (the decoder's Block over
    mb x patches tokens of the encoder's width, so `layer_activation_bytes` of that shape),
    its final norm, and the projector's input, GELU input and second layer's input on the
    pooled tokens. Pooling saves nothing (average pooling's backward needs only shapes)."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    e, tp = BYTES[t.precision], p.tp
    q = tp if p.sequence_parallel else 1
    total = 0
    for encoder in m.encoders().values():
        blocks = dataclasses.replace(cfg, model=encoder_block_config(encoder, m))
        n, h = t.micro_batch * encoder.num_patches, encoder.hidden_size
        if t.recompute == "full":
            total += -(-encoder.num_layers // t.recompute_every) * n * h // q * e
        else:
            total += encoder.num_layers * layer_activation_bytes(blocks, kernels)
        total += n * encoder.patch_numel * e + _norm_bytes(blocks.model, n // q, e, kernels)
        tokens = t.micro_batch * encoder.tokens
        total += tokens * (h + 2 * m.hidden_size // tp) * e
    return total


def recompute_working_bytes(cfg: Config, kernels: Kernels) -> int:
    """Full recomputation: one group of blocks re-run in backward holds its activations
    while it back-propagates (a CPU run does not count these: the saved-tensor hooks only
    watch forwards)."""
    t = cfg.train
    if t.recompute != "full":
        return 0
    plain = dataclasses.replace(cfg, train=dataclasses.replace(t, recompute="none"))
    return t.recompute_every * layer_activation_bytes(plain, kernels)


def activation_bytes(cfg: Config, device_type: str = "cuda") -> list[int]:
    """Peak bytes saved for backward on each pipeline stage (one rank): the most the
    schedule keeps in flight at once, each (micro batch, chunk) weighted by its chunk.
    `cfg` must be validated."""
    m, p = cfg.model, cfg.parallel
    kernels = Kernels.for_device(m, device_type)
    V, P = p.virtual_stages, p.pp
    peaks = []
    layers = layer_partition(cfg)
    for stage, events in enumerate(dry_run(P, V, cfg.train.grad_accum_steps)):
        sizes = [chunk_activation_bytes(
            cfg, len(layers[stage][c]), stage == 0 and c == 0,
            stage == P - 1 and c == V - 1, kernels) for c in range(V)]
        live = peak = 0
        for kind, _, chunk in events:
            live += sizes[chunk] if kind == "F" else -sizes[chunk]
            peak = max(peak, live)
        peaks.append(peak + rope_table_bytes(cfg) + recompute_working_bytes(cfg, kernels))
    return peaks


def rope_table_bytes(cfg: Config) -> int:
    """RoPE's cos and sin tables [s, head dim] (fp32 buffers): saved by reference, once per
    stage however many micro batches are in flight."""
    m = cfg.model
    if m.position_embedding != "rope" or cfg.train.recompute == "full":
        return 0
    return 2 * m.seq_length * m.head_dim * FP32


@dataclass
class StageMemory:
    """Bytes one rank of a pipeline stage holds at the step's peak."""
    pp_rank: int
    params: int
    main_grads: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.main_grads + self.optimizer + self.activations


def stage_memory(cfg: Config, device_type: str = "cuda") -> list[StageMemory]:
    """Every stage's memory per rank. `cfg` must be validated."""
    size = BYTES[cfg.train.precision]
    activations = activation_bytes(cfg, device_type)
    return [StageMemory(r["pp_rank"], (r["params"] + r["gathered"]) * size,
                        r["main_grads"] * FP32,
                        (r["master"] + r["exp_avg"] + r["exp_avg_sq"]) * FP32, a)
            for r, a in zip(optimizer_state_per_rank(cfg), activations)]


@dataclass
class Traffic:
    """Bytes one GPU sends per optimizer step, by parallelism (the busiest rank of each)."""
    tp: float
    pp: float
    dp: float


def _ring(n: int) -> float:
    """Bytes sent per byte of the full tensor by an all-gather or reduce-scatter."""
    return (n - 1) / n


def tp_traffic(cfg: Config, layers: int, has_embedding: bool, has_output: bool) -> float:
    m, p, t = cfg.model, cfg.parallel, cfg.train
    if p.tp == 1:
        return 0.0
    n, e = t.micro_batch * m.seq_length, BYTES[t.precision]
    full = n * m.hidden_size * e * _ring(p.tp)  # one all-gather / reduce-scatter of [n, h]
    if p.sequence_parallel:
        per_layer, embedding, output = 10 + (4 if t.recompute == "full" else 0), 2, 3
    else:
        per_layer, embedding, output = 8 + (4 if t.recompute == "full" else 0), 2, 2
    per_micro = layers * per_layer * full
    per_micro += (embedding * full if has_embedding else 0)
    if has_output:
        per_micro += output * full + 3 * 2 * n * FP32 * _ring(p.tp)  # loss all-reduces
    return per_micro * t.grad_accum_steps


def dp_traffic(cfg: Config, row: dict) -> float:
    """One stage's data-parallel bytes per step from its exact parameter count."""
    p, t = cfg.parallel, cfg.train
    if p.dp == 1:
        return 0.0
    ring, e, params = _ring(p.dp), BYTES[t.precision], row["unsharded"]
    if p.zero_stage == 3:
        return t.grad_accum_steps * params * ring * (2 * e + FP32)
    grads = params * FP32 * ring * (1 if p.zero_stage == 2 else 2)
    return grads + (params * e * ring if p.zero_stage else 0)


def traffic(cfg: Config) -> Traffic:
    """Per-step bytes sent by the busiest GPU for TP, PP and DP. `cfg` must be
    validated."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    P, V, M = p.pp, p.virtual_stages, t.grad_accum_steps
    seq = m.seq_length // p.tp if p.sequence_parallel else m.seq_length
    boundary = t.micro_batch * seq * m.hidden_size * BYTES[t.precision]
    rows = optimizer_state_per_rank(cfg)
    layers = layer_partition(cfg)
    tp = pp = dp = 0.0
    for stage in range(P):
        chunks = [(stage == 0 and c == 0, stage == P - 1 and c == V - 1) for c in range(V)]
        stage_tp = sum(tp_traffic(cfg, len(layers[stage][c]), first, last)
                       for c, (first, last) in enumerate(chunks))
        if p.sequence_parallel and p.tp > 1:  # norm weights' gradients, summed over TP
            stage_layers = sum(len(r) for r in layers[stage])
            norms = (2 * stage_layers + (stage == P - 1)) * m.hidden_size * FP32
            stage_tp += norms * 2 * _ring(p.tp) * (M if p.zero_stage == 3 else 1)
        tp = max(tp, stage_tp)
        sends = sum((not last) + (not first) for first, last in chunks)  # forward, backward
        pp = max(pp, M * sends * boundary if P > 1 else 0.0)
        tied = m.tie_embeddings and P > 1 and stage in (0, P - 1)
        embedding = m.padded_vocab_size(p.tp) // p.tp * m.hidden_size * FP32 if tied else 0
        dp = max(dp, dp_traffic(cfg, rows[stage]) + embedding * 2 * _ring(2))
    return Traffic(tp, pp, dp)


@dataclass
class Layout:
    """One layout's plan: memory in GB per GPU on its busiest stage, GB sent per step."""
    tp: int
    pp: int
    dp: int
    zero_stage: int
    weights_gb: float
    grads_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float
    fits: bool
    tp_comm_gb: float
    pp_comm_gb: float
    dp_comm_gb: float
    comm_s: float


def layout_config(cfg: Config, gpus: int, tp: int, pp: int,
                  zero_stage: Optional[int] = None) -> Config:
    """A resolved copy of `cfg` at TP x PP on `gpus` CUDA devices (raises ConfigError)."""
    p = cfg.parallel
    parallel = {"tp": tp, "pp": pp, "dp": None,
                "virtual_stages": p.virtual_stages if pp > 1 else 1}
    if zero_stage is not None:
        parallel["zero_stage"] = zero_stage
    return resolve(cfg.replace(parallel=parallel, train={"grad_accum_steps": None}), gpus,
                   device_type="cuda")


def plan_layout(cfg: Config, gpu: GPU, device_type: str = "cuda") -> Layout:
    """Memory (busiest stage) and communication of a validated config on `gpu`s
    (`device_type` "cpu": with the kernels a CPU run uses, for comparing with one)."""
    p = cfg.parallel
    busiest = max(stage_memory(cfg, device_type), key=lambda s: s.total)
    sent = traffic(cfg)
    per_node, world = gpu.per_node, p.tp * p.pp * p.dp
    # A group inside a node talks over NVLink; one that spans nodes shares the node's NICs.
    tp_bw = gpu.intra_node_gbs if p.tp <= per_node else gpu.inter_node_gbs / per_node
    dp_bw = (gpu.inter_node_gbs / min(per_node, p.tp * p.dp) if p.tp * p.dp > per_node
             else gpu.intra_node_gbs)
    pp_bw = gpu.inter_node_gbs / per_node if world > per_node else gpu.intra_node_gbs
    comm_s = (sent.tp / tp_bw + sent.pp / pp_bw + sent.dp / dp_bw) / GB
    return Layout(p.tp, p.pp, p.dp, p.zero_stage, busiest.params / GB, busiest.main_grads / GB,
                  busiest.optimizer / GB, busiest.activations / GB, busiest.total / GB,
                  busiest.total < 0.9 * gpu.memory_gb * GB, sent.tp / GB, sent.pp / GB,
                  sent.dp / GB, comm_s)


def candidate_layouts(cfg: Config, gpus: int, per_node: int) -> list[Config]:
    """Every TP (within a node) x PP the model, the batch and the schedule allow."""
    out = []
    for tp in (1, 2, 4, 8):
        if tp > per_node or gpus % tp:
            continue
        for pp in range(1, cfg.model.num_layers + 1):
            if gpus % (tp * pp):
                continue
            try:
                layout = layout_config(cfg, gpus, tp, pp)
                dry_run(pp, layout.parallel.virtual_stages, layout.train.grad_accum_steps)
            except ConfigError:
                continue
            out.append(layout)
    return out
