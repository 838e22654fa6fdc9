"""Typed configs (model, parallel layout, training, data), YAML profiles, the one `resolve`
step, and the parameter count of a model shape.

A profile is a YAML file in `configs/` with `model:`, `parallel:`, `train:` and `data:`
sections; `base: NAME` inherits another profile. Command-line flags override profile values
(`training/arguments.py`). Configs are frozen: `load_config` reads a profile with its
overrides, `resolve(cfg, world_size)` checks everything against the world size and returns
a new config with `parallel.dp` and `train.grad_accum_steps` filled in, before any process
group exists. Every inconsistency raises `ConfigError` with the arithmetic that failed and
what to change.
"""
from __future__ import annotations

import dataclasses
import glob
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """An inconsistent or unknown configuration value."""


@dataclass(frozen=True)
class EncoderConfig:
    """One modality encoder (model/encoders.py) and its projector to the decoder.

    kind image: input [b, channels, *shape] with shape (H, W) or (D, H, W) (CT windows or
    MR sequences as channels), cut into `patch`-sized patches, a token grid shape / patch.
    kind waveform: input [b, channels = leads, samples] with shape (samples,), cut into
    patches of `patch[0]` samples per lead, a token grid (leads, samples / patch).
    The encoder's output grid is average-pooled by `pool` (one factor per grid dim): the
    sample's `tokens` (fixed: pipeline stages exchange fixed shapes) replace as many
    `placeholder_id` positions in its text."""
    kind: str                        # image | waveform
    channels: int
    shape: tuple
    patch: tuple
    pool: tuple
    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_hidden_size: int
    placeholder_id: int

    def __post_init__(self):
        for name in ("shape", "patch", "pool"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def grid(self) -> tuple:
        """The encoder's token grid before pooling."""
        cut = tuple(s // p for s, p in zip(self.shape, self.patch))
        return cut if self.kind == "image" else (self.channels,) + cut

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid)

    @property
    def tokens(self) -> int:
        """Tokens per sample handed to the decoder."""
        return math.prod(g // p for g, p in zip(self.grid, self.pool))

    @property
    def patch_numel(self) -> int:
        return math.prod(self.patch) * (self.channels if self.kind == "image" else 1)


FREEZE_CHOICES = ("none", "encoders", "all-but-projectors")
ENCODERS = ("image", "ecg", "eeg")  # ModelConfig.<name>_encoder; MicroBatch.<images|ecg|eeg>


@dataclass(frozen=True)
class ModelConfig:
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    ffn_hidden_size: int
    vocab_size: int
    seq_length: int
    norm: str = "rmsnorm"            # rmsnorm | layernorm
    activation: str = "swiglu"       # swiglu | gelu
    position_embedding: str = "rope"  # rope | learned
    rope_theta: float = 10000.0
    add_bias: bool = False           # biases in every linear layer (GPT-2 style)
    tie_embeddings: bool = False
    norm_eps: float = 1e-5
    init_std: float = 0.02
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    attention_backend: str = "auto"  # auto | torch | triton
    norm_backend: str = "auto"       # auto | torch | triton | apex
    image_encoder: Optional[EncoderConfig] = None  # multimodal: see EncoderConfig
    ecg_encoder: Optional[EncoderConfig] = None
    eeg_encoder: Optional[EncoderConfig] = None

    def __post_init__(self):
        for name in ENCODERS:  # from YAML or a checkpoint manifest: a dict
            value = getattr(self, f"{name}_encoder")
            if isinstance(value, dict):
                try:
                    object.__setattr__(self, f"{name}_encoder", EncoderConfig(**value))
                except TypeError as e:
                    raise ConfigError(f"model.{name}_encoder: {e}") from None

    def encoders(self) -> dict[str, EncoderConfig]:
        """The configured encoders by modality (empty: a text-only model)."""
        return {n: getattr(self, f"{n}_encoder") for n in ENCODERS
                if getattr(self, f"{n}_encoder") is not None}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def padded_vocab_size(self, tp: int) -> int:
        """Vocab rounded up to a multiple of 128 x TP so every TP shard is GEMM-friendly."""
        multiple = 128 * tp
        return math.ceil(self.vocab_size / multiple) * multiple


@dataclass(frozen=True)
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    virtual_stages: int = 1
    dp: Optional[int] = None         # derived from the world size when None
    backend: str = "auto"            # auto (nccl on CUDA, else gloo) | nccl | gloo
    timeout_s: float = 600.0         # collectives fail after this instead of hanging
    sequence_parallel: bool = False  # norms/dropout on [b, s / tp, h] (Korthikanti et al. 2022)
    zero_stage: int = 0              # 0 | 1 optimizer state | 2 + gradients | 3 + parameters
    bucket_mb: float = 40.0          # gradient bucket size, MiB of fp32 main gradients
    overlap_grad_reduce: bool = True   # launch a bucket's reduction as soon as it is full
    overlap_param_gather: bool = False  # ZeRO-1/2: all-gather updated parameters behind the
    #                                     next forward instead of right after the step


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100
    global_batch: int = 8
    micro_batch: int = 1
    grad_accum_steps: Optional[int] = None  # derived when None; checked when given
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 10
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    seed: int = 1234
    precision: str = "fp32"          # fp32 | bf16 | fp16 (params/activations; fp32 master)
    loss_scale: float = 65536.0      # fp16: initial dynamic loss scale
    loss_scale_window: int = 1000    # fp16: steps without inf/nan before the scale doubles
    max_nonfinite_steps: int = 10    # stop after this many non-finite steps in a row
    step_timeout_s: float = 0.0      # hang watchdog: a step longer than this exits (0: off)
    recompute: str = "none"          # none | selective (attention core) | full (blocks)
    recompute_every: int = 1         # full: checkpoint groups of this many blocks
    memory_interval: int = 0         # log peak memory per rank every N steps (0: never)
    log_interval: int = 1
    save_interval: int = 0           # 0: save only at the end when --save is given
    save_interval_minutes: float = 0.0  # also save after this many minutes (0: off)
    keep_last: int = 0               # keep the newest K checkpoints (0: keep all)
    keep_best: int = 0               # with keep_last: also keep the M of lowest val_loss
    async_save: bool = True          # write checkpoints in a background thread
    freeze: str = "none"             # none | encoders | all-but-projectors (alignment stage)
    loss_weight_image: float = 1.0   # weight of image samples' text in the loss (text-only: 1)
    loss_weight_ecg: float = 1.0
    loss_weight_eeg: float = 1.0
    eval_interval: int = 0           # validation every N steps (0: never; training/evaluate.py)
    eval_iters: int = 1              # global batches of held-out samples per validation


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"        # synthetic | tokens (`path`) | shards (`shards`) | demo
    path: Optional[str] = None       # glob of token files (.npy / .bin)
    synthetic_branching: int = 4     # successors per token in the synthetic bigram stream
    eval_fraction: float = 0.0       # share of the token-file or shard samples held out of training
    eval_path: Optional[str] = None  # glob of held-out token files (validation only)
    shards: Optional[str] = None     # folder of make_shards' manifest.json (training/shard_data.py)
    tokenizer: Optional[str] = None  # sentencepiece model; None: the one the manifest names
    loader_workers: int = 2          # reader processes per rank (0: read in the trainer)
    loader_prefetch: int = 2         # micro batches in flight per reader process
    max_skip_fraction: float = 0.01  # unreadable samples tolerated before the run fails


@dataclass(frozen=True)
class Config:
    profile: str
    model: ModelConfig
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """The inverse of `to_dict` (a checkpoint manifest's "config")."""
        return cls(profile=d["profile"], **{s: SECTIONS[s](**d[s]) for s in SECTIONS})

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some values changed: `cfg.replace(parallel={"tp": 2})`."""
        return dataclasses.replace(self, **{s: dataclasses.replace(getattr(self, s), **v)
                                            for s, v in sections.items()})


SECTIONS = {"model": ModelConfig, "parallel": ParallelConfig, "train": TrainConfig,
            "data": DataConfig}


def profile_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown profile {name!r}: no file {path}; known profiles: {known}")
    return path


def _read_profile(name: str, seen: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    if name in seen:
        raise ConfigError(f"profile inheritance loops: {' -> '.join(seen + (name,))}")
    path = profile_path(name)
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    unknown = set(raw) - set(SECTIONS) - {"base", "description"}
    if unknown:
        raise ConfigError(f"{path}: unknown sections {sorted(unknown)}; expected {sorted(SECTIONS)}")
    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if "base" in raw:
        merged = _read_profile(raw["base"], seen + (name,))
    for section in SECTIONS:
        merged[section].update(raw.get(section) or {})
    return merged


def _build_section(cls, values: dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; valid keys: {sorted(names)}")
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_config(profile: str, overrides: Optional[dict[str, dict[str, Any]]] = None) -> Config:
    """Reads a profile and applies `overrides` ({section: {key: value}}; None values ignored)."""
    sections = _read_profile(profile)
    for section, values in (overrides or {}).items():
        sections[section].update({k: v for k, v in values.items() if v is not None})
    built = {s: _build_section(cls, sections[s], f"profile {profile!r} [{s}]")
             for s, cls in SECTIONS.items()}
    return Config(profile=profile, **built)


# ---------------------------------------------------------------------------------------------
# Parameter count of a model shape (beside the config: the planner, the bucket check and
# the start-up line need it without building a model; tests check it against a built one)


def count_parameters(cfg: ModelConfig, tp: int = 1) -> int:
    """Total parameters of the full model (all stages, all TP shards, encoders included)
    from its shape alone, including vocab padding at this TP size."""
    return sum(count_parameters_by_part(cfg, tp).values())


def _layer_parameters(cfg: ModelConfig) -> int:
    h, f, hd = cfg.hidden_size, cfg.ffn_hidden_size, cfg.head_dim
    bias = cfg.add_bias
    attention = h * cfg.num_heads * hd * 2 + h * cfg.num_kv_heads * hd * 2
    attention += (cfg.num_heads * hd + 2 * cfg.num_kv_heads * hd + h) if bias else 0
    mats = 3 if cfg.activation == "swiglu" else 2
    mlp = mats * h * f + (((mats - 1) * f + h) if bias else 0)
    return attention + mlp + 2 * _norm_parameters(cfg)


def _norm_parameters(cfg: ModelConfig) -> int:
    return cfg.hidden_size * (2 if cfg.norm == "layernorm" else 1)


def encoder_block_config(e: EncoderConfig, decoder: ModelConfig) -> ModelConfig:
    """The shape of an encoder's transformer blocks, as the decoder's Block takes it:
    ViT-style (LayerNorm, GELU, biases, full multi-head attention; positions learned by
    the encoder itself), kernels as the decoder chooses."""
    return ModelConfig(num_layers=e.num_layers, hidden_size=e.hidden_size,
                       num_heads=e.num_heads, num_kv_heads=e.num_heads,
                       ffn_hidden_size=e.ffn_hidden_size, vocab_size=1,
                       seq_length=e.num_patches, norm="layernorm", activation="gelu",
                       position_embedding="learned", add_bias=True, norm_eps=1e-6,
                       init_std=decoder.init_std, attention_backend=decoder.attention_backend,
                       norm_backend=decoder.norm_backend)


def media_parameters_per_rank(cfg: ModelConfig, tp: int) -> float:
    """Encoder and projector parameters on one TP rank of the first stage: the sharded
    ones / TP, the replicated ones (patch embeddings, positions, norms, row-parallel
    biases) whole."""
    parts = count_parameters_by_part(cfg, tp)
    total = sum(parts.values()) - parts["decoder"]
    replicated = 0
    for e in cfg.encoders().values():
        h = e.hidden_size
        positions = h * (sum(e.grid) if e.kind == "waveform" else e.num_patches)
        replicated += (e.patch_numel + 1) * h + positions + e.num_layers * 6 * h + 2 * h
    return (total - replicated) / tp + replicated


def count_parameters_by_part(cfg: ModelConfig, tp: int = 1) -> dict[str, int]:
    """Parameters per part: decoder, image_encoder, waveform_encoder, projector (the parts
    with none left out)."""
    h = cfg.hidden_size
    vocab = cfg.padded_vocab_size(tp) * h
    positions = cfg.seq_length * h if cfg.position_embedding == "learned" else 0
    parts = {"decoder": cfg.num_layers * _layer_parameters(cfg) + positions +
             vocab * (1 if cfg.tie_embeddings else 2) + _norm_parameters(cfg)}
    for name, e in cfg.encoders().items():
        b = encoder_block_config(e, cfg)
        grid = e.grid
        # patch embedding (weight + bias) and positions (image: one per patch; waveform:
        # one per lead plus one per time patch), blocks, final LayerNorm
        positions = e.hidden_size * (sum(grid) if e.kind == "waveform" else e.num_patches)
        encoder = (e.patch_numel + 1) * e.hidden_size + positions + \
            e.num_layers * _layer_parameters(b) + _norm_parameters(b)
        part = "image_encoder" if e.kind == "image" else "waveform_encoder"
        parts[part] = parts.get(part, 0) + encoder
        # projector: column (weight + bias) -> GELU -> row (weight, no bias)
        parts["projector"] = parts.get("projector", 0) + e.hidden_size * h + h + h * h
    return parts


# ---------------------------------------------------------------------------------------------
# Resolution: every check, once, before any process group exists


def resolve(cfg: Config, world_size: int, device_type: Optional[str] = None) -> Config:
    """`cfg` checked against the world size and the device (`cuda` | `cpu`; default: cuda
    when available), returned with `parallel.dp` and `train.grad_accum_steps` filled in.
    Resolving a resolved config returns an equal one."""
    m, p = cfg.model, cfg.parallel
    validate_model(m)
    dp = _check_layout(cfg, world_size)
    cfg = cfg.replace(parallel={"dp": dp},
                      train={"grad_accum_steps": _check_batch(cfg.train, dp)})
    check_micro_batches(p.pp, p.virtual_stages, cfg.train.grad_accum_steps)
    _check_memory_options(cfg, device_type)
    _check_schedule(cfg.train)
    _check_data(cfg.data)
    _check_validation(cfg)
    _check_encoders(cfg)
    return cfg


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {choices}")


def validate_model(m: ModelConfig) -> None:
    _check_choice(m.norm, ("rmsnorm", "layernorm"), "model.norm")
    _check_choice(m.activation, ("swiglu", "gelu"), "model.activation")
    _check_choice(m.position_embedding, ("rope", "learned"), "model.position_embedding")
    _check_choice(m.attention_backend, ("auto", "torch", "triton"), "model.attention_backend")
    _check_choice(m.norm_backend, ("auto", "torch", "triton", "apex"), "model.norm_backend")
    if m.hidden_size % m.num_heads:
        raise ConfigError(f"hidden_size {m.hidden_size} is not divisible by num_heads "
                          f"{m.num_heads}")
    if m.num_heads % m.num_kv_heads:
        raise ConfigError(f"num_heads {m.num_heads} is not a multiple of num_kv_heads "
                          f"{m.num_kv_heads} (grouped-query attention needs equal groups)")
    if m.position_embedding == "rope" and m.head_dim % 2:
        raise ConfigError(f"RoPE needs an even head dim, got {m.head_dim}")


def _check_layout(cfg: Config, world_size: int) -> int:
    """TP/PP/DP against the world size and the model; returns DP."""
    m, p = cfg.model, cfg.parallel
    for name in ("tp", "pp", "virtual_stages"):
        if getattr(p, name) < 1:
            raise ConfigError(f"parallel.{name} must be >= 1, got {getattr(p, name)}")
    if world_size % (p.tp * p.pp):
        raise ConfigError(f"world size {world_size} is not divisible by TP x PP = "
                          f"{p.tp} x {p.pp} = {p.tp * p.pp}")
    dp = world_size // (p.tp * p.pp)
    if p.dp is not None and p.dp != dp:
        raise ConfigError(f"world size {world_size} != TP x PP x DP = {p.tp} x {p.pp} x {p.dp} "
                          f"= {p.tp * p.pp * p.dp}; launch {p.tp * p.pp * p.dp} processes or "
                          f"drop --dp")
    for name, heads in (("num_heads", m.num_heads), ("num_kv_heads", m.num_kv_heads)):
        if heads % p.tp:
            raise ConfigError(f"model.{name} {heads} is not divisible by TP {p.tp}; "
                              f"choose TP among the divisors of {heads}")
    if m.ffn_hidden_size % p.tp:
        raise ConfigError(f"model.ffn_hidden_size {m.ffn_hidden_size} is not divisible by "
                          f"TP {p.tp}")
    chunks = p.pp * p.virtual_stages
    # With encoders, stage 0 holds fewer decoder layers (parallel/pipeline.py: partition),
    # so the split is uneven anyway: every model chunk needs one layer, no more.
    if m.encoders() and m.num_layers < chunks:
        raise ConfigError(f"model.num_layers {m.num_layers} is fewer than PP x virtual "
                          f"stages = {p.pp} x {p.virtual_stages} = {chunks}")
    if not m.encoders() and m.num_layers % chunks:
        raise ConfigError(f"model.num_layers {m.num_layers} is not divisible by PP x virtual "
                          f"stages = {p.pp} x {p.virtual_stages} = {chunks}")
    if p.virtual_stages > 1 and p.pp == 1:
        raise ConfigError("virtual stages (interleaving) need PP > 1")
    return dp


MIB = 2**20


def bucket_elements(bucket_mb: float) -> int:
    """fp32 main-gradient elements in a bucket of `bucket_mb` MiB."""
    return max(1, int(bucket_mb * MIB) // 4)


def _check_memory_options(cfg: Config, device_type: Optional[str] = None) -> None:
    """ZeRO stage, gradient buckets, precision, sequence parallelism and recomputation."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    if device_type is None:
        import torch  # local: the rest of this module stays importable without torch
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    _check_choice(t.precision, ("fp32", "bf16", "fp16"), "train.precision")
    if t.precision == "fp16" and device_type != "cuda":
        raise ConfigError("train.precision='fp16' (--precision fp16) needs a CUDA GPU (fp16 "
                          "matmuls on a CPU are emulated and loss scaling is untestable there); "
                          "use --precision bf16 or fp32 on a CPU")
    if p.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"parallel.zero_stage={p.zero_stage} is not one of 0, 1, 2, 3")
    if p.zero_stage == 3 and p.pp > 1:
        raise ConfigError(f"parallel.zero_stage=3 (--zero-stage 3) with PP {p.pp} is not "
                          f"supported: a pipeline runs many micro batches per step and ZeRO-3 "
                          f"gathers every layer again for each of their forwards and backwards "
                          f"(DeepSpeed and Megatron-LM refuse the pair too); use --zero-stage "
                          f"1 or 2 with PP, or --pp 1 with ZeRO-3")
    _check_buckets(cfg)
    if p.sequence_parallel and m.seq_length % p.tp:
        raise ConfigError(f"parallel.sequence_parallel needs model.seq_length "
                          f"{m.seq_length} divisible by TP {p.tp}")
    _check_choice(t.recompute, ("none", "selective", "full"), "train.recompute")
    if t.recompute_every < 1:
        raise ConfigError(f"train.recompute_every must be >= 1 block, got {t.recompute_every}")
    if t.loss_scale <= 0 or t.loss_scale_window < 1:
        raise ConfigError(f"train.loss_scale ({t.loss_scale}) must be > 0 and "
                          f"train.loss_scale_window ({t.loss_scale_window}) >= 1")
    if t.max_nonfinite_steps < 1 or t.step_timeout_s < 0:
        raise ConfigError(f"train.max_nonfinite_steps ({t.max_nonfinite_steps}, "
                          f"--max-nonfinite-steps) must be >= 1 and train.step_timeout_s "
                          f"({t.step_timeout_s}, --step-timeout-s) >= 0")


def _check_buckets(cfg: Config) -> None:
    bucket_mb = cfg.parallel.bucket_mb
    if not bucket_mb > 0:
        raise ConfigError(f"parallel.bucket_mb={bucket_mb} (--bucket-mb) must be > 0 MiB")
    params = count_parameters(cfg.model, cfg.parallel.tp)
    if bucket_elements(bucket_mb) > params:
        raise ConfigError(f"parallel.bucket_mb={bucket_mb:g} (--bucket-mb) holds "
                          f"{bucket_elements(bucket_mb):,} fp32 gradients, more than the whole "
                          f"model ({params:,} parameters = {4 * params / MIB:.2f} MiB), so "
                          f"no reduction could start before backward ends; choose a fraction "
                          f"of the model, e.g. {params / MIB:.2f} MiB (4 buckets)")


def _check_batch(t: TrainConfig, dp: int) -> int:
    """global batch = micro batch x accumulation steps x DP, shown with the numbers; returns
    the accumulation steps."""
    if t.micro_batch < 1 or t.global_batch < 1:
        raise ConfigError(f"batch sizes must be positive: global {t.global_batch}, "
                          f"micro {t.micro_batch}")
    per_step = t.micro_batch * dp
    if t.grad_accum_steps is not None:
        product = t.micro_batch * t.grad_accum_steps * dp
        if product != t.global_batch:
            raise ConfigError(
                f"global batch {t.global_batch} != micro batch x accumulation steps x DP = "
                f"{t.micro_batch} x {t.grad_accum_steps} x {dp} = {product}; set global batch "
                f"to {product} or accumulation steps to {t.global_batch / per_step:g}")
        return t.grad_accum_steps
    if t.global_batch % per_step:
        raise ConfigError(f"global batch {t.global_batch} is not divisible by micro batch x DP "
                          f"= {t.micro_batch} x {dp} = {per_step}")
    return t.global_batch // per_step


def check_micro_batches(pp: int, virtual_stages: int, micro_batches: int) -> None:
    """Micro-batch counts the pipeline schedules (parallel/pipeline.py) can run."""
    if pp > 1 and virtual_stages == 1 and micro_batches < pp:
        raise ConfigError(f"1F1B needs at least PP = {pp} micro batches per step and DP rank, "
                          f"got {micro_batches} (= global batch / (micro batch x DP)); raise "
                          f"the global batch or lower the micro batch")
    if virtual_stages > 1 and micro_batches % pp:
        raise ConfigError(f"interleaved 1F1B needs the micro batches per step and DP rank "
                          f"({micro_batches}) to be a multiple of PP = {pp}")


def _check_schedule(t: TrainConfig) -> None:
    """Step counts and intervals: a negative one would train nothing and still succeed."""
    if t.steps < 1:
        raise ConfigError(f"train.steps={t.steps} (--steps) must be >= 1 optimizer step")
    if t.log_interval < 1:
        raise ConfigError(f"train.log_interval={t.log_interval} (--log-interval) must be >= 1")
    for name in ("save_interval", "memory_interval", "warmup_steps", "save_interval_minutes",
                 "keep_last", "keep_best"):
        if getattr(t, name) < 0:
            raise ConfigError(f"train.{name}={getattr(t, name)} (--{name.replace('_', '-')}) "
                              f"must be >= 0")


def _check_encoders(cfg: Config) -> None:
    """Each encoder's shapes against itself, the TP size and the decoder's sequence."""
    m, p = cfg.model, cfg.parallel
    budget = 0
    for name, e in m.encoders().items():
        where = f"model.{name}_encoder"
        _check_choice(e.kind, ("image", "waveform"), f"{where}.kind")
        dims = (2, 3) if e.kind == "image" else (1,)
        if len(e.shape) not in dims or len(e.patch) != len(e.shape):
            raise ConfigError(f"{where}: shape {e.shape} and patch {e.patch} need "
                              f"{' or '.join(map(str, dims))} equal-length dims")
        if any(s % q for s, q in zip(e.shape, e.patch)):
            raise ConfigError(f"{where}: shape {e.shape} is not divisible by patch {e.patch}")
        if len(e.pool) != len(e.grid) or any(g % q for g, q in zip(e.grid, e.pool)):
            raise ConfigError(f"{where}: token grid {e.grid} is not divisible by pool "
                              f"{e.pool}")
        if e.hidden_size % e.num_heads or e.num_heads % p.tp or e.ffn_hidden_size % p.tp:
            raise ConfigError(f"{where}: hidden {e.hidden_size}, heads {e.num_heads}, ffn "
                              f"{e.ffn_hidden_size} must split into heads and over TP {p.tp}")
        if p.sequence_parallel and e.num_patches % p.tp:
            raise ConfigError(f"{where}: {e.num_patches} patches are not divisible by TP "
                              f"{p.tp} (sequence parallelism splits them)")
        if not 0 <= e.placeholder_id < m.vocab_size:
            raise ConfigError(f"{where}: placeholder_id {e.placeholder_id} is outside the "
                              f"vocabulary [0, {m.vocab_size})")
        budget += e.tokens
    if budget >= m.seq_length:
        raise ConfigError(f"the encoders' {budget} tokens leave no room for text in "
                          f"model.seq_length {m.seq_length}")
    _check_choice(cfg.train.freeze, FREEZE_CHOICES, "train.freeze")


def _check_data(d: DataConfig) -> None:
    _check_choice(d.source, ("synthetic", "tokens", "shards", "demo"), "data.source")
    if d.path and d.shards:
        raise ConfigError("data.path (--data) and data.shards (--data-shards) are both set: "
                          "choose one")
    if d.path:
        if not glob.glob(d.path):
            raise ConfigError(f"data.path={d.path!r} (--data): no file matches this glob")
    elif d.shards:
        if not (Path(d.shards) / "manifest.json").is_file():
            raise ConfigError(f"data.shards={d.shards!r} (--data-shards): no manifest.json in "
                              f"this folder (run tools/make_shards.py to the end)")
    elif d.source in ("tokens", "shards"):
        raise ConfigError(f"data.source={d.source!r} needs data.path (--data GLOB) or "
                          f"data.shards (--data-shards DIR)")
    if d.tokenizer and not Path(d.tokenizer).is_file():
        raise ConfigError(f"data.tokenizer={d.tokenizer!r} (--tokenizer): no such file")
    if d.loader_workers < 0 or d.loader_prefetch < 1:
        raise ConfigError(f"data.loader_workers ({d.loader_workers}) must be >= 0 and "
                          f"data.loader_prefetch ({d.loader_prefetch}) >= 1")
    if not 0 <= d.max_skip_fraction < 1:
        raise ConfigError(f"data.max_skip_fraction={d.max_skip_fraction} (--max-skip-fraction) "
                          f"must be in [0, 1)")


def _check_validation(cfg: Config) -> None:
    """Validation needs held-out data: token files hold out --eval-fraction of their
    samples or come with --eval-data; the synthetic streams always have a held-out range."""
    t, d = cfg.train, cfg.data
    if t.eval_interval < 0 or t.eval_iters < 1:
        raise ConfigError(f"train.eval_interval={t.eval_interval} (--eval-interval) must be "
                          f">= 0 and train.eval_iters={t.eval_iters} (--eval-iters) >= 1")
    if not 0.0 <= d.eval_fraction < 1.0:
        raise ConfigError(f"data.eval_fraction={d.eval_fraction} (--eval-fraction) must be in "
                          f"[0, 1)")
    if d.eval_path and not glob.glob(d.eval_path):
        raise ConfigError(f"data.eval_path={d.eval_path!r} (--eval-data): no file matches "
                          f"this glob")
    if t.eval_interval and d.path and not (d.eval_path or d.eval_fraction):
        raise ConfigError(f"--eval-interval {t.eval_interval} with token files (--data) needs "
                          f"held-out samples: --eval-fraction F (e.g. 0.01) or --eval-data GLOB")
    if t.eval_interval and d.shards and not d.eval_fraction:
        raise ConfigError(f"--eval-interval {t.eval_interval} with shards (--data-shards) needs "
                          f"held-out samples: --eval-fraction F (e.g. 0.05)")
