"""Hugging Face exchange: a checkpoint's text decoder as a Llama model folder, and back
(CLIs: tools/export_hf.py, tools/import_hf.py).

    DIR/config.json                      LlamaConfig fields (model_type "llama")
    DIR/model.safetensors                the decoder, Llama names; above --max-shard-size:
    DIR/model-00001-of-0000N.safetensors   shards, and
    DIR/model.safetensors.index.json       (hf_files.py)
    DIR/tokenizer.model                  the run's sentencepiece model, when it has one,
    DIR/tokenizer_config.json              and its special tokens
    DIR/encoders/<modality>.safetensors  each encoder with its projector ("encoder.*",
    DIR/encoders/<modality>.json           "projector.*") and its EncoderConfig

The mapping is one name per tensor, no permutation: megamed's attention rotates the two
halves of each head (transformer.apply_rope, the GPT-NeoX convention HF's Llama uses), its
q/k/v and gate/up projections are separate matrices like HF's, and its RMSNorm is HF's. The
vocabulary padding rows (always zero) are cut on export and restored on import. Only the
Llama shape is representable (RMSNorm, SwiGLU, RoPE, no biases); the rest is refused with
the reason.

Export reads the model files alone (reshard.read_weights), so any TP x PP x DP layout and
ZeRO stage exports. Import writes a checkpoint at step 0 for a TP x PP (x DP) layout with
fresh optimizer state (fp32 master = the weights, zero moments) and the RNG streams a new
run of that layout starts with, through the converter's own writer (reshard.write_target).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import torch

from megamed.checkpoint.format import MANIFEST, CheckpointError
from megamed.checkpoint.hf_files import parse_size, read_safetensors, write_safetensors
from megamed.checkpoint.reshard import (EMBEDDING, MOMENTS, TIED_COPY, Layout, read_meta,
                                        read_weights, target_layout, write_target)
from megamed.config import (ENCODERS, MIB, Config, ConfigError, EncoderConfig, ModelConfig,
                            TrainConfig, bucket_elements, count_parameters, load_config,
                            profile_path)
from megamed.data.tokenizer import BOS, EOS, MODALITY_TOKENS, PAD, UNK, Tokenizer, TokenizerError
from megamed.model.transformer import PRECISION_DTYPES
from megamed.parallel.random import seed_streams

CONFIG = "config.json"
TOKENIZER, TOKENIZER_CONFIG, ENCODER_DIR = "tokenizer.model", "tokenizer_config.json", "encoders"
DEFAULT_MAX_SHARD = "5GB"
PROFILE_KEY = "megamed_profile"  # config.json: the run's profile, for its training settings

# A decoder block's parameters, megamed -> HF Llama (under "layers.{i}." / "model.layers.{i}.").
BLOCK_NAMES = {"attention_norm.weight": "input_layernorm.weight",
               "attention.wq.weight": "self_attn.q_proj.weight",
               "attention.wk.weight": "self_attn.k_proj.weight",
               "attention.wv.weight": "self_attn.v_proj.weight",
               "attention.wo.weight": "self_attn.o_proj.weight",
               "mlp_norm.weight": "post_attention_layernorm.weight",
               "mlp.w1.weight": "mlp.gate_proj.weight",
               "mlp.w3.weight": "mlp.up_proj.weight",
               "mlp.w2.weight": "mlp.down_proj.weight"}
OUTER_NAMES = {EMBEDDING: "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight",
               TIED_COPY: "lm_head.weight"}
VOCAB_ROWS = (EMBEDDING, TIED_COPY)
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
PRECISIONS = {DTYPE_NAMES[d]: p for p, d in PRECISION_DTYPES.items()}
MEDIA = "media."


class NotLlamaError(ValueError):
    """A model that a Llama checkpoint cannot represent."""


def run_cli(fn, *args) -> int:
    """The tools' exit status: 0, or 2 after one line naming the file and the reason."""
    try:
        fn(*args)
    except (CheckpointError, ConfigError, NotLlamaError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


# -- names and shapes -------------------------------------------------------------------------

def hf_name(name: str) -> str:
    """megamed parameter name -> HF Llama name (KeyError for a non-decoder name)."""
    if name in OUTER_NAMES:
        return OUTER_NAMES[name]
    _, i, rest = name.split(".", 2)  # layers.{i}.{rest}
    return f"model.layers.{i}.{BLOCK_NAMES[rest]}"


def decoder_names(m: ModelConfig) -> list[str]:
    """The decoder's megamed parameter names, in HF's order (embedding, blocks, norm, head)."""
    names = [EMBEDDING] + [f"layers.{i}.{n}" for i in range(m.num_layers) for n in BLOCK_NAMES]
    return names + ["final_norm.weight"] + ([] if m.tie_embeddings else [TIED_COPY])


def hf_shapes(m: ModelConfig) -> dict[str, tuple]:
    """HF name -> shape of every decoder tensor of `m` (vocabulary unpadded)."""
    h, f, q, kv = m.hidden_size, m.ffn_hidden_size, m.num_heads * m.head_dim, \
        m.num_kv_heads * m.head_dim
    block = {"attention_norm.weight": (h,), "attention.wq.weight": (q, h),
             "attention.wk.weight": (kv, h), "attention.wv.weight": (kv, h),
             "attention.wo.weight": (h, q), "mlp_norm.weight": (h,), "mlp.w1.weight": (f, h),
             "mlp.w3.weight": (f, h), "mlp.w2.weight": (h, f)}
    outer = {EMBEDDING: (m.vocab_size, h), "final_norm.weight": (h,),
             TIED_COPY: (m.vocab_size, h)}
    return {hf_name(n): outer.get(n) or block[n.split(".", 2)[2]] for n in decoder_names(m)}


def check_llama_shaped(m: ModelConfig, where: Path) -> None:
    """Raises NotLlamaError naming every feature a LlamaConfig cannot express."""
    found = [f"{field} {getattr(m, field)} (Llama: {want})"
             for field, want in (("norm", "rmsnorm"), ("activation", "swiglu"),
                                 ("position_embedding", "rope")) if getattr(m, field) != want]
    if m.add_bias:
        found.append("add_bias true (Llama's linear layers have no biases)")
    if found:
        raise NotLlamaError(f"{where}: not a Llama-shaped decoder: " + "; ".join(found))


# -- config.json ------------------------------------------------------------------------------

def llama_config(m: ModelConfig, dtype: torch.dtype, tokenizer: Optional[Tokenizer],
                 profile: str) -> dict:
    """config.json for `m` (its tensors in `dtype`) of a run of `profile`; the special ids
    with a tokenizer."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": m.hidden_size, "intermediate_size": m.ffn_hidden_size,
              "num_attention_heads": m.num_heads, "num_key_value_heads": m.num_kv_heads,
              "head_dim": m.head_dim, "num_hidden_layers": m.num_layers,
              "rms_norm_eps": m.norm_eps, "rope_theta": m.rope_theta,
              # transformers >= 5 reads RoPE from here (rope_theta above for older readers)
              "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta},
              "vocab_size": m.vocab_size, "max_position_embeddings": m.seq_length,
              "tie_word_embeddings": m.tie_embeddings, "torch_dtype": DTYPE_NAMES[dtype],
              "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
              "attention_dropout": m.attention_dropout, "initializer_range": m.init_std,
              PROFILE_KEY: profile}
    if tokenizer:
        config.update(pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.bos_id,
                      eos_token_id=tokenizer.eos_id)
    return config


def model_fields(config: dict, where: Path) -> dict:
    """ModelConfig fields from a config.json, or NotLlamaError naming what does not fit."""
    get = config.get
    if get("model_type") != "llama":
        raise NotLlamaError(f"{where}: model_type {get('model_type')!r}, only 'llama' imports")
    rope = get("rope_parameters") or get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    problems = [f"{k} {get(k)!r}" for k, ok in (("hidden_act", "silu"),
                                                ("attention_bias", False),
                                                ("mlp_bias", False))
                if get(k, ok) != ok] + ([f"rope_type {rope_type!r} (only 'default')"]
                                        if rope_type != "default" else [])
    try:
        heads, hidden = config["num_attention_heads"], config["hidden_size"]
        if get("head_dim", hidden // heads) * heads != hidden:
            problems.append(f"head_dim {get('head_dim')} x {heads} heads != hidden {hidden}")
        if problems:
            raise NotLlamaError(f"{where}: not representable in megamed: "
                                + "; ".join(problems))
        return dict(num_layers=config["num_hidden_layers"], hidden_size=hidden,
                    num_heads=heads, num_kv_heads=get("num_key_value_heads") or heads,
                    ffn_hidden_size=config["intermediate_size"],
                    vocab_size=config["vocab_size"],
                    seq_length=config["max_position_embeddings"],
                    norm="rmsnorm", activation="swiglu", position_embedding="rope",
                    add_bias=False, rope_theta=float(rope.get("rope_theta",
                                                              get("rope_theta", 10000.0))),
                    tie_embeddings=bool(get("tie_word_embeddings", False)),
                    norm_eps=float(get("rms_norm_eps", 1e-6)),
                    init_std=float(get("initializer_range", 0.02)),
                    attention_dropout=float(get("attention_dropout", 0.0)))
    except KeyError as e:
        raise CheckpointError(where, f"config.json lacks {e}") from None


# -- export -----------------------------------------------------------------------------------

def decoder_tensors(weights: dict[str, torch.Tensor], m: ModelConfig) -> dict[str, torch.Tensor]:
    """HF Llama tensors (unpadded vocabulary) from megamed's full weights."""
    return {hf_name(n): (weights[n][:m.vocab_size] if n in VOCAB_ROWS else weights[n]).clone()
            for n in decoder_names(m)}


def encoder_files(weights: dict[str, torch.Tensor], m: ModelConfig) -> dict[str, tuple]:
    """modality -> (its tensors {"encoder.*", "projector.*"}, its JSON config)."""
    found = {}
    for modality, e in m.encoders().items():
        tensors = {}
        for part in ("encoders", "projectors"):
            prefix = f"{MEDIA}{part}.{modality}."
            tensors.update({f"{part[:-1]}.{n[len(prefix):]}": t.clone()
                            for n, t in weights.items() if n.startswith(prefix)})
        config = {"format": "megamed-encoder", "modality": modality,
                  "encoder": dataclasses.asdict(e), "decoder_hidden_size": m.hidden_size,
                  "blocks": "pre-norm ViT blocks: LayerNorm (eps 1e-6), bidirectional "
                            "multi-head attention, GELU (tanh) MLP, biases; projector: "
                            "fc1 (bias) -> GELU (tanh) -> fc2 (no bias)"}
        found[modality] = (tensors, config)
    return found


def find_tokenizer(ckpt: Path, cfg: Config, given: Optional[str]) -> Optional[Path]:
    """The run's sentencepiece model: `given`, else tokenizer.model in the checkpoint
    folder (import_hf puts it there) or beside the run's token files."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise CheckpointError(path, "tokenizer model not found")
        return path
    candidates = [ckpt / TOKENIZER]
    if cfg.data.path:
        candidates.append(Path(cfg.data.path).parent / TOKENIZER)
    return next((c for c in candidates if c.is_file()), None)


def read_tokenizer(path: Path, m: ModelConfig) -> Tokenizer:
    """The tokenizer, checked to fit the embedding (ids past vocab_size would index
    padding rows or fail)."""
    try:
        tokenizer = Tokenizer(path)
    except TokenizerError as e:
        raise CheckpointError(path, str(e)) from None
    if tokenizer.vocab_size > m.vocab_size:
        raise CheckpointError(path, f"tokenizer has {tokenizer.vocab_size} pieces, the model's "
                                    f"vocab_size is {m.vocab_size}: not this model's tokenizer")
    return tokenizer


def write_tokenizer(tokenizer: Tokenizer, out: Path, m: ModelConfig) -> None:
    """tokenizer.model as it is, and the special pieces for HF's LlamaTokenizer."""
    shutil.copyfile(tokenizer.path, out / TOKENIZER)
    config = {"tokenizer_class": "LlamaTokenizer", "model_max_length": m.seq_length,
              "pad_token": PAD, "unk_token": UNK, "bos_token": BOS, "eos_token": EOS,
              "add_bos_token": True, "add_eos_token": False,
              "additional_special_tokens": list(MODALITY_TOKENS)}
    (out / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2))


def export_hf(load: str, out: str, max_shard_size: str = DEFAULT_MAX_SHARD,
              tokenizer: Optional[str] = None, log=print) -> Path:
    """Writes the newest checkpoint of LOAD as a Llama model folder OUT (layout above)."""
    max_bytes = parse_size(max_shard_size)
    ckpt, folder = Path(load), Path(out)
    if folder.exists() and any(folder.iterdir()):
        # Stale shards or an index from an earlier export would be read with the new files.
        raise CheckpointError(folder, "not empty; export into a new folder")
    step_dir, meta, layout = read_meta(ckpt, optimizer=False)
    m = layout.cfg.model
    check_llama_shaped(m, step_dir / MANIFEST)
    found = find_tokenizer(ckpt, layout.cfg, tokenizer)
    tokenizer = read_tokenizer(found, m) if found else None
    weights = read_weights(step_dir, meta, layout, log)
    tensors = decoder_tensors(weights, m)
    dtype = tensors[OUTER_NAMES[EMBEDDING]].dtype
    folder.mkdir(parents=True, exist_ok=True)
    files = write_safetensors(tensors, folder, max_bytes)
    (folder / CONFIG).write_text(json.dumps(llama_config(m, dtype, tokenizer, layout.cfg.profile),
                                            indent=2))
    if tokenizer:
        write_tokenizer(tokenizer, folder, m)
    for modality, (enc, config) in encoder_files(weights, m).items():
        (folder / ENCODER_DIR).mkdir(exist_ok=True)
        write_safetensors(enc, folder / ENCODER_DIR, max_bytes, stem=modality)
        (folder / ENCODER_DIR / f"{modality}.json").write_text(json.dumps(config, indent=2))
    log(f"exported step {meta['step']} of {ckpt} ({sum(t.numel() for t in tensors.values()):,} "
        f"decoder parameters, {len(files)} file(s), {len(m.encoders())} encoder(s)"
        f"{', tokenizer' if tokenizer else ''}) to {folder}")
    return folder


# -- import -----------------------------------------------------------------------------------

def read_encoders(folder: Path) -> dict[str, tuple]:
    """modality -> (EncoderConfig, {megamed name: tensor}) from FOLDER/encoders/."""
    found = {}
    for path in sorted((folder / ENCODER_DIR).glob("*.json")):
        try:
            config = json.loads(path.read_text())
            modality, e = config["modality"], EncoderConfig(**config["encoder"])
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(path, f"not a megamed encoder config ({err})") from None
        if modality not in ENCODERS:
            raise CheckpointError(path, f"modality {modality!r}, expected one of {ENCODERS}")
        tensors, _ = read_safetensors(folder / ENCODER_DIR, modality)
        found[modality] = (e, {f"{MEDIA}{part}s.{modality}.{rest}": t
                               for name, t in tensors.items()
                               for part, rest in [name.split(".", 1)]})
    return found


def decoder_weights(tensors: dict[str, torch.Tensor], source: dict[str, Path],
                    m: ModelConfig, folder: Path) -> dict[str, torch.Tensor]:
    """megamed names -> tensors, every HF tensor checked against the shape config.json
    gives; a missing or unexpected tensor is named with its file."""
    shapes, weights = hf_shapes(m), {}
    for name in decoder_names(m):
        key = hf_name(name)
        if key not in tensors:
            raise CheckpointError(folder, f"tensor {key} missing (config.json: {m.num_layers} "
                                          f"layers, tie_word_embeddings {m.tie_embeddings})")
        if tuple(tensors[key].shape) != shapes[key]:
            raise CheckpointError(source[key], f"{key} has shape {tuple(tensors[key].shape)}, "
                                               f"config.json gives {shapes[key]}")
        weights[name] = tensors[key]
    for key in sorted(set(tensors) - set(shapes)):
        tied = key == OUTER_NAMES[TIED_COPY] and m.tie_embeddings
        if tied and torch.equal(tensors[key], weights[EMBEDDING]):
            continue  # a tied head written out: the embedding itself
        if key.endswith("rotary_emb.inv_freq"):
            continue  # older exports' RoPE buffer: derived from rope_theta
        raise CheckpointError(source[key], f"unexpected tensor {key}" +
                              (" (differs from the tied embedding)" if tied else ""))
    return weights


def import_config(folder: Path, dtype: torch.dtype, encoders: dict, profile: Optional[str],
                  log) -> Config:
    """The model from config.json (and encoders/), precision from the tensors' dtype, the
    rest (training and parallel settings) from `profile`, else the profile a megamed export
    recorded, else the defaults."""
    path = folder / CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(path, f"unreadable ({type(e).__name__}: {e})") from None
    profile = profile or exported_profile(config, path, log)
    model = dict(model_fields(config, path),
                 **{f"{k}_encoder": dataclasses.asdict(e) for k, (e, _) in encoders.items()})
    if dtype not in DTYPE_NAMES:
        raise CheckpointError(folder, f"tensors of dtype {dtype}; megamed trains in "
                                      f"{sorted(DTYPE_NAMES.values())}")
    precision = PRECISIONS[DTYPE_NAMES[dtype]]
    if profile:
        cfg = load_config(profile, {"model": model, "train": {"precision": precision}})
        extra = sorted(set(cfg.model.encoders()) - set(encoders))
        if extra:
            raise CheckpointError(folder, f"profile {profile!r} has the {extra} encoder(s), "
                                          f"the folder has no {ENCODER_DIR}/ for them")
        return cfg
    return Config(profile=f"hf:{folder.name}", model=ModelConfig(**model),
                  train=TrainConfig(precision=precision))


def fitting_bucket_mb(cfg: Config, log) -> Optional[float]:
    """For a model smaller than one gradient bucket of its settings (which resolve
    refuses): the size of four buckets; else None (the settings' own)."""
    params = count_parameters(cfg.model)
    if bucket_elements(cfg.parallel.bucket_mb) <= params:
        return None
    bucket_mb = float(f"{params / MIB:.3g}")
    log(f"the model is smaller than one {cfg.parallel.bucket_mb:g} MiB gradient bucket: "
        f"writing {bucket_mb:g} MiB buckets (resume with --bucket-mb {bucket_mb:g})")
    return bucket_mb


def exported_profile(config: dict, path: Path, log) -> Optional[str]:
    """The profile a megamed export recorded, when this installation knows it."""
    name = config.get(PROFILE_KEY)
    if not name:
        return None
    try:
        profile_path(name)
    except ConfigError:
        log(f"{path}: profile {name!r} is not known here; training settings are the "
            f"defaults (pass --profile)")
        return None
    return name


def fresh_rng(target: Layout) -> dict:
    """The RNG streams every rank of a new run of `target` starts with (seed_streams),
    per (tp, pp); the caller's own generator is left as it was."""
    extras = {"rng": {}, "torch_rng": {}}
    with torch.random.fork_rng(devices=[]):
        for pp in range(target.p.pp):
            for tp in range(target.p.tp):
                extras["rng"][tp, pp] = seed_streams(target.cfg.train.seed, tp, pp).get_states()
                extras["torch_rng"][tp, pp] = torch.get_rng_state()
    return extras


def import_hf(hf: str, save: str, tp: int, pp: int, dp: int = 1, profile: Optional[str] = None,
              zero_stage: Optional[int] = None, bucket_mb: Optional[float] = None,
              log=print) -> Path:
    """Writes Llama folder HF (and its encoders/) as a megamed checkpoint SAVE at step 0,
    TP x PP x DP, optimizer state fresh; returns the step directory."""
    folder, dst = Path(hf), Path(save)
    if (dst / "latest").exists():
        raise CheckpointError(dst, "already holds a checkpoint; import into a new folder")
    tensors, source = read_safetensors(folder)
    encoders = read_encoders(folder)
    dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    cfg = import_config(folder, dtype, encoders, profile, log)
    weights = decoder_weights(tensors, source, cfg.model, folder)
    if bucket_mb is None:
        bucket_mb = fitting_bucket_mb(cfg, log)
    target = target_layout(cfg, tp, pp, dp, zero_stage, bucket_mb, None)
    for _, enc in encoders.values():
        weights.update(enc)
    _check_complete(weights, target, folder)
    moments = {n: {m: w.float() if m == "master" else torch.zeros(w.shape) for m in MOMENTS}
               for n, w in weights.items()}
    step_dir = write_target(dst, {"step": 0}, target, target, weights, moments,
                            fresh_rng(target), {"steps": 0, "loss_scaler": None}, log)
    if (folder / TOKENIZER).is_file():
        shutil.copyfile(folder / TOKENIZER, dst / TOKENIZER)
    log(f"imported {folder} ({len(weights)} tensors, {len(encoders)} encoder(s)) as {step_dir}")
    return step_dir


def _check_complete(weights: dict, target: Layout, folder: Path) -> None:
    """Every parameter the target model has (the tied copy aside) has a tensor, and no
    encoder tensor is left over."""
    wanted = {n for _, chunks in target.stages() for chunk in chunks
              for n, _ in chunk.named_parameters()}
    if target.cfg.model.tie_embeddings:
        wanted.discard(TIED_COPY)
    missing, extra = sorted(wanted - set(weights)), sorted(set(weights) - wanted)
    if missing or extra:
        raise CheckpointError(folder / ENCODER_DIR, f"encoder tensors missing {missing[:4]}, "
                                                    f"unexpected {extra[:4]}")
