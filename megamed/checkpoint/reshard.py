"""Resharding a checkpoint to another TP x PP x DP layout (ZeRO stage, bucket size, virtual
stages), so a run can resume on a different cluster (CLI: tools/convert_checkpoint.py).

`reshard` reads SRC's `latest` step (format.py; checksums verified) and writes DST/step_N
(with checksums, published atomically) and DST/latest. Parameter names are layout-free
(layers keep their global index), so each parameter's full value is rebuilt from its TP shards (concatenated along the `partition_dim`
of its InitSpec; TP-replicated ones from TP rank 0), then sliced for the target. The
optimizer's flat shards are cut back into per-parameter master / exp_avg / exp_avg_sq with
the source layout's own buffer plan (`plan_buffer` over the model built on the meta device,
exactly as parallel/data.py lays out the real buffers) and packed again with the target's.
The pipeline copy of a tied embedding is a duplicate of the embedding and is rebuilt from it.
The vocabulary padding (a multiple of 128 x TP rows, always zero) is cut or zero-extended.
`read_weights` rebuilds the full weights alone (no optimizer state: any ZeRO stage) and
`write_target` writes given state at a layout; the Hugging Face exchange (hf.py) uses both.

RNG: every target rank takes the streams of the source rank with the same TP and PP rank,
or rank 0 of the dimension that has grown; dropout streams therefore restart from a source
rank's state rather than continuing a stream of their own (layout-invariant runs use
dropout 0, where this changes nothing). The data order is a function of the step.

Refused: ZeRO-3, as source or target. Its state is one flat shard per block over DP
(`zero3_units` with one bucket each); cutting it needs a second plan beside the bucket one
and a ZeRO-3 resume to test it against; convert from or to ZeRO-1/2 instead. Everything is
held in memory at once (the full model and optimizer state: 16 bytes per parameter plus the
weights), which suits a one-off conversion on a large host, not a 32B model on a laptop.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from megamed.checkpoint.format import (MANIFEST, CheckpointError, manifest, model_file,
                                       optimizer_layout, read_file, read_manifest, shard_file,
                                       tmp_dir, write_file, write_manifest)
from megamed.config import Config, ConfigError, bucket_elements, resolve
from megamed.model.build import meta_chunks
from megamed.parallel.data import buffer_groups, parameter_kinds, plan_buffer

MOMENTS = ("master", "exp_avg", "exp_avg_sq")
TIED_COPY, EMBEDDING = "output.weight", "embedding.tokens.weight"


@dataclasses.dataclass
class Layout:
    """One side of the conversion: its config (parallel values filled in) and the meta
    model chunks of each pipeline stage."""
    cfg: Config

    @property
    def p(self):
        return self.cfg.parallel

    @property
    def sharded(self) -> bool:
        return self.p.zero_stage > 0

    def stages(self):
        return [(pp, meta_chunks(self.cfg, pp)) for pp in range(self.p.pp)]

    def buffer_plans(self, chunks):
        """Per chunk, per buffer: (parameter names, params, offsets, bucket layouts), in the
        order DataParallelGrads builds them (so the optimizer's shards come in this order)."""
        sp = self.p.sequence_parallel and self.p.tp > 1
        shards = self.p.dp if self.sharded else 1
        plans = []
        for chunk in chunks:
            names = {id(q): n for n, q in chunk.named_parameters()}
            for params in buffer_groups(chunk):
                kinds = parameter_kinds(params, chunk, sp)
                offsets, buckets = plan_buffer([q.numel() for q in params], kinds,
                                               bucket_elements(self.p.bucket_mb), shards)
                plans.append(([names[id(q)] for q in params], params, offsets, buckets))
        return plans


# -- reading: full tensors by name ----------------------------------------------------------

def _is_tied_copy(name: str, cfg: Config) -> bool:
    return name == TIED_COPY and cfg.model.tie_embeddings


def _unshard(pieces: list[torch.Tensor], spec, name: str, where) -> torch.Tensor:
    if spec.partition_dim is None:
        return pieces[0].clone()
    full = torch.cat(pieces, dim=spec.partition_dim)
    if tuple(full.shape) != tuple(spec.full_shape):
        raise CheckpointError(where, f"{name}: TP shards {[tuple(t.shape) for t in pieces]} "
                                     f"make {tuple(full.shape)}, expected {spec.full_shape}")
    return full


def read_meta(src: Path, optimizer: bool = True) -> tuple[Path, dict, Layout]:
    """The source's newest complete step: (its directory, meta.json, its layout).
    `optimizer` False: only the model files will be read, which every ZeRO stage writes
    whole (per TP x PP rank), so ZeRO-3 is accepted."""
    step_dir, meta = read_manifest(src)
    meta_path = step_dir / MANIFEST
    try:
        cfg = Config.from_dict(meta["config"]).replace(
            parallel={"tp": meta["tp"], "pp": meta["pp"], "dp": meta["dp"]})
    except (KeyError, TypeError) as e:
        raise CheckpointError(meta_path, f"manifest config unusable ({e})") from None
    if optimizer and cfg.parallel.zero_stage == 3:
        raise CheckpointError(meta_path, "saved with ZeRO-3 (per-block shards), which this "
                                         "converter does not read; resume it at its own layout "
                                         "and save again with --zero-stage 1 or 2")
    if optimizer_layout(cfg) != meta["optimizer"]:
        raise CheckpointError(meta_path, f"optimizer layout {meta['optimizer']} does not match "
                                         f"its config ({optimizer_layout(cfg)})")
    return step_dir, meta, Layout(cfg)


def read_source(step_dir: Path, meta: dict, layout: Layout, log) -> tuple[dict, dict, dict,
                                                                          dict]:
    """Returns (weights {name: full tensor}, moments {name: {moment: full tensor}}, the RNG
    streams per source (tp, pp), and Adam's step count and loss scaler)."""
    cfg, step = layout.cfg, meta["step"]
    p = cfg.parallel
    log(f"source {step_dir}: step {step}, TP {p.tp} x PP {p.pp} x DP {p.dp}, "
        f"ZeRO-{p.zero_stage}, {p.bucket_mb:g} MiB buckets, {p.virtual_stages} virtual stage(s)")
    weights, moments, extras = {}, {}, {"rng": {}, "torch_rng": {}}
    opt_meta = None
    for pp, chunks in layout.stages():
        files = _read_model_files(step_dir, meta, layout, pp, log)
        for tp, f in enumerate(files):
            extras["rng"][tp, pp], extras["torch_rng"][tp, pp] = f["rng"], f["torch_rng"]
        # Optimizer state of each TP rank: a list per DP rank (one entry unsharded).
        opt = [[f["optimizer"]] if not layout.sharded else
               [read_file(step_dir / shard_file(tp, pp, dp), step, meta)["optimizer"]
                for dp in range(p.dp)] for tp, f in enumerate(files)]
        if layout.sharded:
            log(f"  read {p.tp * p.dp} optimizer shard files of stage {pp}")
        opt_meta = opt_meta or {k: opt[0][0][k] for k in ("steps", "loss_scaler")}
        weights.update(_unshard_weights(files, chunks, cfg, step_dir, pp))
        _read_moments(layout, chunks, opt, moments, step_dir, pp)
    return weights, moments, extras, opt_meta


def read_weights(step_dir: Path, meta: dict, layout: Layout, log) -> dict:
    """The full weights {name: tensor} from the model files alone (no optimizer state), in
    the order of the stages' parameters; the tied output copy is left out."""
    weights = {}
    for pp, chunks in layout.stages():
        files = _read_model_files(step_dir, meta, layout, pp, log)
        weights.update(_unshard_weights(files, chunks, layout.cfg, step_dir, pp))
    return weights


def _read_model_files(step_dir: Path, meta: dict, layout: Layout, pp: int, log) -> list[dict]:
    """Stage `pp`'s model files of every TP rank, checked against the manifest's sums."""
    files = [read_file(step_dir / model_file(tp, pp), meta["step"], meta)
             for tp in range(layout.p.tp)]
    log(f"  read {', '.join(model_file(tp, pp) for tp in range(layout.p.tp))}")
    return files


def _unshard_weights(files: list[dict], chunks, cfg: Config, step_dir: Path, pp: int) -> dict:
    """Stage `pp`'s full weights from its TP ranks' model files, checked against the
    shapes its config gives."""
    weights = {}
    for c, chunk in enumerate(chunks):
        params = dict(chunk.named_parameters())
        for tp, f in enumerate(files):
            where = step_dir / model_file(tp, pp)
            if len(f["model"]) != len(chunks):
                raise CheckpointError(where, f"{len(f['model'])} model chunks, expected "
                                             f"{len(chunks)} (virtual stages)")
            differ = sorted(set(f["model"][c]) ^ set(params))
            if differ:
                raise CheckpointError(where, f"chunk {c}: tensors {differ[:4]} are in the "
                                             f"file or the model its config builds, not "
                                             f"both")
        for name, q in params.items():
            where = step_dir / model_file(0, pp)
            pieces = [f["model"][c][name] for f in files]
            for tp, piece in enumerate(pieces):
                if tuple(piece.shape) != tuple(q.shape):
                    raise CheckpointError(step_dir / model_file(tp, pp),
                                          f"{name} has shape {tuple(piece.shape)}, the "
                                          f"config gives {tuple(q.shape)}")
            if not _is_tied_copy(name, cfg):
                weights[name] = _unshard(pieces, q.init_spec, name, where)
    return weights


def _read_moments(layout: Layout, chunks, opt, moments: dict, step_dir: Path, pp: int) -> None:
    p = layout.p
    plans = layout.buffer_plans(chunks)
    shards = p.dp if layout.sharded else 1
    expected = [b.shard(0, shards)[1] - b.shard(0, shards)[0]
                for _, _, _, buckets in plans for b in buckets]
    per_tp = []
    for tp in range(p.tp):
        for dp, state in enumerate(opt[tp]):
            where = step_dir / (shard_file(tp, pp, dp) if layout.sharded else model_file(tp, pp))
            if state["numels"] != expected:
                raise CheckpointError(where, f"optimizer shards of {state['numels'][:4]}... "
                                             f"elements, the source layout's plan gives "
                                             f"{expected[:4]}...: mismatched shapes")
        # Rebuild each flat buffer from the DP shards of its buckets, then view parameters.
        flat: dict[str, dict] = {}
        i = 0
        for names, params, offsets, buckets in plans:
            bufs = {m: torch.zeros(buckets[-1].end, dtype=torch.float32) for m in MOMENTS}
            for b in buckets:
                for dp in range(shards):
                    lo, hi = b.shard(dp, shards)
                    for m in MOMENTS:
                        bufs[m][lo:hi] = opt[tp][dp]["shards"][i][m]
                i += 1
            for name, q, o in zip(names, params, offsets):
                flat[name] = {m: bufs[m][o:o + q.numel()].view(q.shape) for m in MOMENTS}
        per_tp.append(flat)
    for chunk in chunks:
        for name, q in chunk.named_parameters():
            if _is_tied_copy(name, layout.cfg):
                continue
            moments[name] = {m: _unshard([per_tp[tp][name][m] for tp in range(p.tp)],
                                         q.init_spec, name, step_dir / model_file(0, pp))
                             for m in MOMENTS}


# -- writing ---------------------------------------------------------------------------------

def _fit_rows(full: torch.Tensor, shape: tuple, name: str) -> torch.Tensor:
    """The vocabulary padding differs with TP (a multiple of 128 x TP rows): cut or extend
    the always-zero padding rows; any other difference is an error."""
    if tuple(full.shape) == tuple(shape):
        return full
    if full.shape[1:] != shape[1:]:
        raise ConfigError(f"{name}: source shape {tuple(full.shape)}, target needs {shape}")
    if full.shape[0] > shape[0]:
        return full[:shape[0]]
    return torch.cat([full, full.new_zeros((shape[0] - full.shape[0],) + tuple(shape[1:]))])


def _slice(full: torch.Tensor, spec, tp: int, name: str) -> torch.Tensor:
    full = _fit_rows(full, tuple(spec.full_shape), name)
    if spec.partition_dim is None:
        return full.clone()
    return full.chunk(spec.tp_size, dim=spec.partition_dim)[tp].clone()


def _source_name(name: str, cfg: Config) -> str:
    return EMBEDDING if _is_tied_copy(name, cfg) else name


def write_target(dst: Path, meta: dict, src: Layout, target: Layout, weights: dict,
                 moments: dict, extras: dict, opt_meta: dict, log) -> Path:
    step, p, sp = meta["step"], target.p, src.p
    work = tmp_dir(dst, step)  # published, with checksums, once every file is written
    work.mkdir(parents=True, exist_ok=True)
    for pp, chunks in target.stages():
        plans = target.buffer_plans(chunks)
        for tp in range(p.tp):
            def local(name, q, full):
                return _slice(full, q.init_spec, tp, name).to(q.dtype)
            model = [{n: local(n, q, weights[_source_name(n, target.cfg)])
                      for n, q in chunk.named_parameters()} for chunk in chunks]
            shards = p.dp if target.sharded else 1
            flat = []
            for names, params, offsets, buckets in plans:
                bufs = {m: torch.zeros(buckets[-1].end, dtype=torch.float32) for m in MOMENTS}
                for n, q, o in zip(names, params, offsets):
                    for m in MOMENTS:
                        full = moments[_source_name(n, target.cfg)][m]
                        bufs[m][o:o + q.numel()] = _slice(full, q.init_spec, tp, n).reshape(-1)
                flat.append((buckets, bufs))
            src_tp, src_pp = (tp if tp < sp.tp else 0), (pp if pp < sp.pp else 0)
            payload = {"step": step, "model": model,
                       "rng": copy.deepcopy(extras["rng"][src_tp, src_pp]),
                       "torch_rng": extras["torch_rng"][0, src_pp].clone()}
            for dp in range(shards):
                parts = [(b.shard(dp, shards), bufs) for buckets, bufs in flat for b in buckets]
                state = {"steps": opt_meta["steps"], "numels": [hi - lo for (lo, hi), _ in parts],
                         "loss_scaler": copy.deepcopy(opt_meta["loss_scaler"]),
                         "shards": [{m: bufs[m][lo:hi].clone() for m in MOMENTS}
                                    for (lo, hi), bufs in parts]}
                if target.sharded:
                    write_file(work / shard_file(tp, pp, dp),
                               {"step": step, "optimizer": state})
                else:
                    payload["optimizer"] = state
            write_file(work / model_file(tp, pp), payload)
            log(f"  wrote {model_file(tp, pp)}" +
                (f" and {shards} optimizer shard files" if target.sharded else ""))
    return write_manifest(dst, work, dict(manifest(step, p.tp, p.pp, p.dp, target.cfg),
                                          val_loss=meta.get("val_loss")))


def target_layout(src_cfg: Config, tp: int, pp: int, dp: int, zero_stage, bucket_mb,
                  virtual_stages) -> Layout:
    given = {"zero_stage": zero_stage, "bucket_mb": bucket_mb, "virtual_stages": virtual_stages}
    cfg = src_cfg.replace(parallel=dict({k: v for k, v in given.items() if v is not None},
                                        tp=tp, pp=pp, dp=dp),
                          train={"grad_accum_steps": None})  # derived again for the new DP
    if cfg.parallel.zero_stage == 3:
        raise ConfigError("--zero-stage 3: writing ZeRO-3 (per-block shards) is not supported "
                          "by this converter; convert to --zero-stage 1 or 2 (the same memory "
                          "for the optimizer state)")
    return Layout(resolve(cfg, tp * pp * dp, "cpu" if cfg.train.precision != "fp16" else "cuda"))


def reshard(src: str, dst: str, tp: int, pp: int, dp: int, zero_stage=None, bucket_mb=None,
            virtual_stages=None, log=print) -> Path:
    """Converts SRC's newest checkpoint to TP x PP x DP (ZeRO stage, bucket size and virtual
    stages: the source's when None) in DST; returns the step directory written."""
    src_path, dst_path = Path(src), Path(dst)
    if src_path.resolve() == dst_path.resolve():
        raise ConfigError(f"{dst}: write the converted checkpoint to another directory")
    step_dir, meta, source = read_meta(src_path)
    target = target_layout(source.cfg, tp, pp, dp, zero_stage, bucket_mb, virtual_stages)
    weights, moments, extras, opt_meta = read_source(step_dir, meta, source, log)
    t = target.p
    log(f"target {dst_path}: TP {t.tp} x PP {t.pp} x DP {t.dp}, ZeRO-{t.zero_stage}, "
        f"{t.bucket_mb:g} MiB buckets, {t.virtual_stages} virtual stage(s)")
    step_dir = write_target(dst_path, meta, source, target, weights, moments, extras,
                            opt_meta, log)
    log(f"converted {len(weights)} parameters: {step_dir}")
    return step_dir

