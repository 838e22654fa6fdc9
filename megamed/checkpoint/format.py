"""The on-disk format of a checkpoint: file names, the manifest with the files' checksums,
and writing, publishing and verifying files. Written by save.py, read by load.py,
rewritten for another layout by reshard.py.

    DIR/latest                           the newest published step (its folder name)
    DIR/step_0000100/meta.json           step, layout, optimizer layout, config, files
    DIR/step_0000100/tp00_pp00.pt        model chunk(s), RNG streams; the optimizer state
                                         when it is not sharded (ZeRO-0)
    DIR/step_0000100/tp00_pp00_dp03.pt   ZeRO >= 1: DP rank 3's optimizer shard
    DIR/.tmp_step_0000100/               a save in progress (never read; removed at start)
    DIR/.tmp_step_0000100/NAME.sum       one rank's {"sha256", "bytes", "rank"} of NAME

A model file holds {"step", "model": [chunk state_dict, ...], "rng", "torch_rng"} (and
"optimizer" at ZeRO-0; callers may add keys, e.g. "data": they are saved and returned as
they are); a shard file {"step", "optimizer"}. The optimizer state (see
training/optimizer.py) is {"steps", "numels", "loss_scaler", "shards": [{"master",
"exp_avg", "exp_avg_sq"}]}: flat fp32 tensors, one per gradient bucket (its DP shard at
ZeRO 1/2) or per block (ZeRO-3), in buffer order. Model files are layout-free within a
TP x PP layout; optimizer shards are not, so resuming needs the same TP x PP, and the same
optimizer layout (`optimizer_layout`: ZeRO partitioning, DP size when sharded, bucket size),
which meta.json records and `load` checks; `reshard` converts between layouts. The data
order is a function of the step, so a resumed run continues exactly where it stopped.

meta.json: {"step", "tp", "pp", "dp", "optimizer", "config", "files": {NAME: {"sha256",
"bytes", "rank"}}, "val_loss": float | null}. "files" lists every data file of the step
with the global rank that wrote it; a load recomputes the sha256 of each file it reads.

Atomicity: every rank writes its files into DIR/.tmp_step_N/ and fsyncs them; once all
ranks have finished, rank 0 writes meta.json there (fsynced), renames the folder to
DIR/step_N (one atomic rename) and then replaces `latest` (write, fsync, rename). A crash
at any moment leaves the previous published step or the new one, never a half one; a
folder without meta.json is never a checkpoint. Old steps are removed the same way round
(renamed to DIR/.trash_step_N first).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from megamed.config import Config

LATEST, MANIFEST, SUM = "latest", "meta.json", ".sum"
TMP_PREFIX, TRASH_PREFIX, STEP_PREFIX = ".tmp_", ".trash_", "step_"


class CheckpointError(RuntimeError):
    def __init__(self, path, reason: str):
        super().__init__(f"checkpoint {path}: {reason}")
        self.path, self.reason = path, reason


class CheckpointMismatch(CheckpointError):
    """The checkpoint is intact but belongs to another model, profile or layout: refused,
    never skipped in favour of an older one."""


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:07d}"


def step_of(name: str) -> Optional[int]:
    """The step of a published folder name (step_0000100), else None."""
    digits = name[len(STEP_PREFIX):]
    return int(digits) if name.startswith(STEP_PREFIX) and digits.isdigit() else None


def tmp_dir(root: Path, step: int) -> Path:
    return root / (TMP_PREFIX + step_dir_name(step))


def model_file(tp_rank: int, pp_rank: int) -> str:
    return f"tp{tp_rank:02d}_pp{pp_rank:02d}.pt"


def shard_file(tp_rank: int, pp_rank: int, dp_rank: int) -> str:
    return f"tp{tp_rank:02d}_pp{pp_rank:02d}_dp{dp_rank:02d}.pt"


def optimizer_layout(cfg: Config) -> dict[str, Any]:
    """What the optimizer shards' shapes depend on. ZeRO-1 and 2 share one layout (the
    same shards, reduced differently); unsharded state does not depend on DP."""
    p = cfg.parallel
    partition = {0: "none", 1: "buckets", 2: "buckets", 3: "blocks"}[p.zero_stage]
    return {"partition": partition, "dp": p.dp if p.zero_stage else 1,
            "bucket_mb": None if p.zero_stage == 3 else p.bucket_mb}


def manifest(step: int, tp: int, pp: int, dp: int, cfg: Config) -> dict[str, Any]:
    return {"step": step, "tp": tp, "pp": pp, "dp": dp, "optimizer": optimizer_layout(cfg),
            "config": cfg.to_dict()}


# -- writing ----------------------------------------------------------------------------------

class _HashingWriter:
    """A write-only file object that hashes what passes through (torch.save only writes),
    so the checksum costs no second read of the file."""

    def __init__(self, f):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new file in `path` durable (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path: Path, payload: dict[str, Any], rank: int = 0) -> dict[str, Any]:
    """torch.save + fsync, and NAME.sum beside it; returns {"sha256", "bytes", "rank"}."""
    try:
        with open(path, "wb") as f:
            writer = _HashingWriter(f)
            torch.save(payload, writer)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # name the file: torch.save's errors (a full disk) do not
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    entry = {"sha256": writer.sha.hexdigest(), "bytes": writer.bytes, "rank": rank}
    _write_durably(path.with_name(path.name + SUM), json.dumps(entry))
    return entry


def _write_durably(path: Path, text: str) -> None:
    """Writes `text` to `path` by a fsynced temporary file and a rename."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish(root: Path, work_dir: Path, meta: dict[str, Any]) -> Path:
    """Rank 0, once every rank's files are in `work_dir`: meta.json with every file's
    checksum, the atomic rename to DIR/step_N, then `latest`. Returns the step folder."""
    sums = sorted(work_dir.glob("*" + SUM))
    meta = dict(meta, files={s.name[:-len(SUM)]: json.loads(s.read_text()) for s in sums})
    for s in sums:
        s.unlink()
    _write_durably(work_dir / MANIFEST, json.dumps(meta, indent=1))
    fsync_dir(work_dir)
    final = root / step_dir_name(meta["step"])
    if final.exists():  # the same step saved again (a resumed run): retire the old one
        remove_step(final)
    os.rename(work_dir, final)
    fsync_dir(root)
    _write_durably(root / LATEST, final.name + "\n")
    fsync_dir(root)
    return final


def remove_step(step_dir: Path) -> None:
    """Renames first, so a half-deleted folder is never taken for a checkpoint."""
    trash = step_dir.with_name(TRASH_PREFIX + step_dir.name)
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(step_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_leftovers(root: Path) -> None:
    """Saves and removals a crash interrupted (rank 0, before any save of this run)."""
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(d, ignore_errors=True)


def write_manifest(root: Path, work_dir: Path, meta: dict[str, Any]) -> Path:
    """A single writer (reshard.py) that wrote every file into `work_dir` itself."""
    return publish(root, work_dir, meta)


# -- reading ----------------------------------------------------------------------------------

def read_file(path: Path, step: int, meta: Optional[dict] = None) -> dict[str, Any]:
    """A model or shard file, checked against the manifest's checksum (when it has one)
    and to belong to `step`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, "shard missing" + _writer(path, meta)) from None
    except OSError as e:
        raise CheckpointError(path, f"unreadable shard ({e})") from None
    _verify(path, data, meta)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as e:  # torch.load raises many types for a damaged file
        raise CheckpointError(path, f"unreadable shard ({type(e).__name__}: {e})") from None
    if payload.get("step") != step:
        raise CheckpointError(path, f"shard is for step {payload.get('step')}, manifest says "
                                    f"{step}")
    return payload


def _writer(path: Path, meta: Optional[dict]) -> str:
    entry = (meta or {}).get("files", {}).get(path.name)
    return f" (written by rank {entry['rank']})" if entry else ""


def _verify(path: Path, data: bytes, meta: Optional[dict]) -> None:
    files = (meta or {}).get("files")
    if files is None:
        return  # a checkpoint from before checksums: nothing to compare against
    entry = files.get(path.name)
    if entry is None:
        raise CheckpointError(path, "not listed in the manifest's files")
    if len(data) != entry["bytes"]:
        raise CheckpointError(path, f"truncated or damaged: {len(data)} bytes, the manifest "
                                    f"says {entry['bytes']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(path, f"checksum mismatch: sha256 {digest[:12]}..., the "
                                    f"manifest says {entry['sha256'][:12]}...")


def read_step_manifest(step_dir: Path) -> dict[str, Any]:
    meta_path = step_dir / MANIFEST
    try:
        return json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(step_dir, "step folder or its meta.json missing") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(meta_path, f"unreadable manifest ({e})") from None


def latest_step_dir(root: Path) -> Path:
    latest = root / LATEST
    if not latest.exists():
        raise CheckpointError(root, "no 'latest' file: not a megamed checkpoint directory, "
                                    "or no save finished")
    return root / latest.read_text().strip()


def read_manifest(root: Path) -> tuple[Path, dict[str, Any]]:
    """The step `latest` names in checkpoint directory `root`: (its directory, meta.json)."""
    step_dir = latest_step_dir(root)
    return step_dir, read_step_manifest(step_dir)


def candidates(root: Path) -> list[Path]:
    """Published step folders to resume from, newest first: the one `latest` names and
    every older one (a folder newer than `latest` was pointed away from on purpose)."""
    if not root.is_dir():
        return []
    steps = sorted((s, d) for d in root.iterdir() if (s := step_of(d.name)) is not None)
    latest = root / LATEST
    if latest.exists():
        newest = step_of(latest.read_text().strip())
        if newest is not None:
            steps = [(s, d) for s, d in steps if s <= newest]
    return [d for _, d in reversed(steps)]
