"""Writes de-identified WebDataset shards from a raw export (format: README "Data: tokenizer
and shards"; the contract the loader reads is the manifest).

Studies are sorted by folder name and cut into shards of `samples_per_shard` in that order,
so shard i always holds the same studies: that is what makes resume and splitting the work
over machines simple. Machine w of N (`num_workers` / `worker_index`, e.g. a Slurm array
task or a Kubernetes Indexed Job) writes the shards i with i % N == w. Each finished shard
gets a record `OUT/parts/shard-NNNNNN.json` (its manifest entry, errors and the hashes of its
inputs, preprocessing and key); a shard whose record, size and sha256 still match is skipped
on the next run. Whichever worker finds every record present writes `manifest.json` and
`errors.jsonl` (tmp + rename); `merge_manifest(OUT)` does the same on demand.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds
from tqdm import tqdm

import megamed
from megamed.data.deid import key_id
from megamed.data.preprocess import PreprocessConfig
from megamed.data.studies import StudyReader, StudyResult, list_studies

FORMAT = "megamed-shards/1"
PARTS = "parts"


class ShardError(ValueError):
    """Shards or their records that cannot be used together (named, with the reason)."""


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_offsets(tar_path: str | os.PathLike) -> list[dict]:
    """[{"key", "files": {ext: [data offset, size]}}] in tar order; ext is everything after
    the first dot of the member name (WebDataset's rule), offsets point past the header."""
    samples: list[dict] = []
    with tarfile.open(tar_path, "r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, ext = info.name.partition(".")
            if not samples or samples[-1]["key"] != key:
                samples.append({"key": key, "files": {}})
            samples[-1]["files"][ext] = [info.offset_data, info.size]
    return samples


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_json(path: Path, value) -> None:
    _atomic_write(path, json.dumps(value, indent=1, sort_keys=True).encode())


@dataclass(frozen=True)
class ShardPlan:
    """Which studies go to which shard, and which shards this worker writes."""

    studies: tuple[tuple[str, ...], ...]
    owned: tuple[int, ...]

    @classmethod
    def make(cls, names: list[str], samples_per_shard: int, num_workers: int = 1,
             worker_index: int = 0) -> "ShardPlan":
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        if not 0 <= worker_index < num_workers:
            raise ValueError(f"worker_index {worker_index} is outside 0..{num_workers - 1} "
                             f"(num_workers={num_workers})")
        shards = tuple(tuple(names[i:i + samples_per_shard])
                       for i in range(0, len(names), samples_per_shard))
        return cls(shards, tuple(range(worker_index, len(shards), num_workers)))


def inputs_hash(studies) -> str:
    return hashlib.sha256("\n".join(studies).encode()).hexdigest()


class ShardWriter:
    """Writes the shards of `plan` owned by this worker into `out` (see the module doc)."""

    def __init__(self, raw, out, key: bytes, config: PreprocessConfig, *, workers: int = 1,
                 progress: bool = True, tokenizer: str | None = None):
        self.raw, self.out = Path(raw), Path(out)
        self.key, self.config, self.workers, self.progress = key, config, workers, progress
        self.identity = {"preprocess_hash": config.hash(), "preprocess": config.to_dict(),
                         "deid_key_id": key_id(key), "format": FORMAT}
        self.tokenizer = tokenizer

    def finished_record(self, index: int, studies, num_shards: int) -> dict | None:
        """The shard's record when the record, the tar's size and its sha256 all match."""
        part, tar = self.out / PARTS / f"{shard_name(index)[:-4]}.json", self.out / shard_name(index)
        try:
            record = json.loads(part.read_text())
        except (OSError, ValueError):
            return None
        expected = dict(self.identity, inputs_hash=inputs_hash(studies), num_shards=num_shards)
        if any(record.get(k) != v for k, v in expected.items()) or not tar.exists():
            return None
        entry = record["shard"]
        if tar.stat().st_size != entry["bytes"] or file_sha256(tar) != entry["sha256"]:
            return None
        return record

    def run(self, plan: ShardPlan) -> dict:
        """Writes the owned shards that are not finished; returns counts (samples and errors
        over all owned shards, skipped ones included) and the manifest path (None while other
        workers' shards are missing)."""
        (self.out / PARTS).mkdir(parents=True, exist_ok=True)
        finished = {i: self.finished_record(i, plan.studies[i], len(plan.studies))
                    for i in plan.owned}
        todo = [i for i, record in finished.items() if record is None]
        for i in todo:  # left by an interrupted run of this worker (only its own shards)
            for stale in self.out.glob(shard_name(i) + ".tmp*"):
                stale.unlink(missing_ok=True)
        done = [r for r in finished.values() if r is not None]
        summary = {"shards": len(plan.owned), "written": len(todo), "skipped": len(done),
                   "samples": sum(r["shard"]["samples"] for r in done),
                   "errors": sum(len(r["errors"]) for r in done)}
        names = [n for i in todo for n in plan.studies[i]]
        with tqdm(total=len(names), unit="study", disable=not self.progress,
                  desc=f"{len(todo)} shards") as bar, _study_results(self, names) as results:
            for i in todo:
                shard = [next(results) for _ in plan.studies[i]]
                record = self._write_shard(i, plan, shard)
                summary["samples"] += record["shard"]["samples"]
                summary["errors"] += len(record["errors"])
                bar.update(len(shard))
        manifest = merge_manifest(self.out, tokenizer=self.tokenizer, missing_ok=True)
        summary["manifest"] = str(manifest) if manifest else None
        return summary

    def _write_shard(self, index: int, plan: ShardPlan, results: list[StudyResult]) -> dict:
        tar = self.out / shard_name(index)
        tmp = tar.with_name(tar.name + f".tmp{os.getpid()}")
        # a fixed mtime makes shards byte-reproducible: same inputs, config and key, same sha256
        with wds.TarWriter(str(tmp), encoder=False, mtime=0) as sink:
            for result in results:
                if result.members:
                    sink.write({"__key__": result.key, **result.members})
        os.replace(tmp, tar)
        members = member_offsets(tar)
        record = dict(self.identity, inputs_hash=inputs_hash(plan.studies[index]),
                      num_shards=len(plan.studies),
                      errors=[e for r in results for e in r.errors],
                      shard={"name": tar.name, "samples": len(members),
                             "bytes": tar.stat().st_size, "sha256": file_sha256(tar),
                             "members": members})
        _atomic_json(self.out / PARTS / f"{tar.name[:-4]}.json", record)
        return record


_READER: StudyReader | None = None
_INIT_ERROR: BaseException | None = None


def _init_reader(raw, key, config) -> None:
    """Pool initializer. One torch thread per worker: the parallelism is across studies, and
    a forked child must not enter the OpenMP pool its parent started (it would hang)."""
    global _READER, _INIT_ERROR
    try:
        import torch
        torch.set_num_threads(1)
        _READER = StudyReader(raw, key, config)
    except BaseException as e:  # re-raised by the first task: a failing initializer makes
        _INIT_ERROR = e          # multiprocessing respawn workers forever


def _read_study(name: str) -> StudyResult:
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    return _READER(name)


class _study_results:
    """Context manager yielding an iterator of StudyResult in `names` order, read in this
    process (workers=1) or by a pool of processes."""

    def __init__(self, writer: ShardWriter, names: list[str]):
        self.writer, self.names, self.pool = writer, names, None

    def __enter__(self):
        w = self.writer
        if w.workers <= 1 or len(self.names) <= 1:
            reader = StudyReader(w.raw, w.key, w.config)
            return map(reader, self.names)
        self.pool = multiprocessing.get_context("fork").Pool(
            w.workers, initializer=_init_reader, initargs=(w.raw, w.key, w.config))
        return self.pool.imap(_read_study, self.names, chunksize=1)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _read_parts(out: Path) -> dict[int, dict]:
    parts = {}
    for path in sorted((out / PARTS).glob("shard-*.json")):
        try:
            parts[int(path.stem.split("-")[1])] = json.loads(path.read_text())
        except (ValueError, IndexError) as e:
            raise ShardError(f"{path}: unreadable shard record ({e}); delete it and rerun "
                             "make_shards to rewrite that shard") from None
    return parts


def merge_manifest(out, *, tokenizer: str | None = None, missing_ok: bool = False) -> Path | None:
    """Writes OUT/manifest.json and OUT/errors.jsonl from the shard records of all workers.
    With missing_ok, returns None while some shard's record is missing; otherwise raises
    ShardError naming them. Records must agree on preprocessing, key and shard count.
    Without `tokenizer`, an earlier manifest's tokenizer entry is kept if the file is unchanged."""
    out = Path(out)
    parts = _read_parts(out)
    if not parts:
        if missing_ok:
            return None
        raise ShardError(f"{out / PARTS}: no shard records; run make_shards first")
    first = parts[min(parts)]
    num_shards = first["num_shards"]
    missing = [i for i in range(num_shards) if i not in parts]
    if missing:
        if missing_ok:
            return None
        raise ShardError(f"{out}: {len(missing)} of {num_shards} shards have no record yet "
                         f"(first: {shard_name(missing[0])}); wait for every worker to finish")
    for i in range(num_shards):
        for field in ("preprocess_hash", "deid_key_id", "num_shards", "format"):
            if parts[i].get(field) != first.get(field):
                raise ShardError(f"{out / shard_name(i)}: {field} differs from "
                                 f"{shard_name(min(parts))}'s; rerun make_shards with one config")
    shards = [parts[i]["shard"] for i in range(num_shards)]
    tokenizer_entry = _tokenizer_entry(tokenizer) if tokenizer else _previous_tokenizer(out)
    manifest = {"format": FORMAT, "tool_version": megamed.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "deid_key_id": first["deid_key_id"], "preprocess": first.get("preprocess"),
                "preprocess_hash": first["preprocess_hash"], "tokenizer": tokenizer_entry,
                "num_samples": sum(s["samples"] for s in shards), "shards": shards}
    errors = b"".join(json.dumps(e, sort_keys=True).encode() + b"\n"
                      for i in range(num_shards) for e in parts[i]["errors"])
    _atomic_write(out / "errors.jsonl", errors)
    _atomic_json(out / "manifest.json", manifest)
    return out / "manifest.json"


def _tokenizer_entry(path: str | os.PathLike) -> dict:
    return {"path": str(path), "sha256": file_sha256(path)}


def _previous_tokenizer(out: Path) -> dict | None:
    """The tokenizer an earlier manifest recorded, while that file is still the same."""
    try:
        entry = json.loads((out / "manifest.json").read_text()).get("tokenizer")
        return entry if entry and file_sha256(entry["path"]) == entry["sha256"] else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def make_shards(raw, out, key: bytes, config: PreprocessConfig, *, samples_per_shard: int = 64,
                workers: int = 1, num_workers: int = 1, worker_index: int = 0,
                progress: bool = True, tokenizer: str | None = None) -> dict:
    """Shards every study folder of `raw` into `out` (this worker's share); see ShardWriter."""
    names = list_studies(raw)
    if not names:
        raise ShardError(f"{raw}: no study folders (expected RAW/<study>/...)")
    plan = ShardPlan.make(names, samples_per_shard, num_workers, worker_index)
    writer = ShardWriter(raw, out, key, config, workers=workers, progress=progress,
                         tokenizer=tokenizer)
    return writer.run(plan)
