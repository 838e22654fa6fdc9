"""A small shard writer for tests and benchmarks, following specs/SHARDS_FORMAT.md.

Tars are written with webdataset's own TarWriter; member offsets for the manifest are read
back with Python's tarfile (`TarInfo.offset_data`), an implementation independent of ours.
Values may be raw bytes to plant corrupt members. Also: a tiny sentencepiece tokenizer with
the special symbols the loader needs.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import sentencepiece as spm
import webdataset as wds

PREPROCESS = {"image": {"windows": [[40, 400], [50, 350], [600, 1600]], "size": 16},
              "ecg": {"rate_hz": 50, "seconds": 1}}


def preprocess_hash(preprocess: dict) -> str:
    return hashlib.sha256(json.dumps(preprocess, sort_keys=True).encode()).hexdigest()


def _members(tar_path: Path) -> list[dict]:
    members: dict[str, dict] = {}
    with tarfile.open(tar_path) as tar:
        for info in tar:
            key, ext = info.name.split(".", 1)
            members.setdefault(key, {"key": key, "files": {}})["files"][ext] = [
                info.offset_data, info.size]
    return list(members.values())


def write_shards(out_dir, samples: list[dict], per_shard: int,
                 preprocess: dict = PREPROCESS) -> dict:
    """samples: dicts with "__key__" and members ("json", "txt", "img.npy", "ecg.npy",
    "eeg.npy"); returns the manifest written to out_dir/manifest.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(samples), per_shard):
        name = f"shard-{len(shards):06d}.tar"
        with wds.TarWriter(str(out_dir / name)) as writer:
            for sample in samples[start:start + per_shard]:
                writer.write(sample)
        data = (out_dir / name).read_bytes()
        members = _members(out_dir / name)
        shards.append({"name": name, "samples": len(members), "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest(), "members": members})
    manifest = {"format": "megamed-shards/1", "tool_version": "test",
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "deid_key_id": "0" * 16, "preprocess": preprocess,
                "preprocess_hash": preprocess_hash(preprocess), "tokenizer": None,
                "num_samples": sum(s["samples"] for s in shards), "shards": shards}
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest


REPORT_WORDS = ("no acute findings sinus rhythm mild cardiomegaly left ventricle ejection "
                "fraction pleural effusion nodule right lower lobe contrast enhanced axial "
                "series comparison prior study stable impression recommend follow up").split()


def make_study(rng: np.random.Generator, key: str, modalities: set,
               image_shape=(3, 16, 16), ecg_shape=(12, 50), eeg_shape=(4, 40),
               text: bool = True) -> dict:
    """One study with random values, in the members the shard format defines."""
    sample = {"__key__": key}
    meta = {"patient": f"p{rng.integers(1 << 30):08x}", "modalities": sorted(modalities),
            "image": None, "ecg": None, "eeg": None, "preprocess_hash": "x"}
    if text:
        words = rng.choice(REPORT_WORDS, size=int(rng.integers(3, 40)))
        sample["txt"] = " ".join(words) + " é 肺"  # non-ASCII: byte fallback and UTF-8
    if "image" in modalities:
        sample["img.npy"] = rng.random(image_shape).astype(np.float16)
        meta["image"] = {"modality": "CT", "shape": list(image_shape), "windows": []}
    for name, shape in (("ecg", ecg_shape), ("eeg", eeg_shape)):
        if name in modalities:
            sample[f"{name}.npy"] = rng.standard_normal(shape).astype(np.float16)
            meta[name] = {"shape": list(shape), "rate_hz": 50}
    sample["json"] = meta
    return sample


def train_tokenizer(vocab_size: int = 400) -> spm.SentencePieceProcessor:
    """A BPE model with byte fallback and the loader's special symbols, trained in memory."""
    lines = [" ".join(REPORT_WORDS[i:] + REPORT_WORDS[:i]) for i in range(len(REPORT_WORDS))]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4), model_writer=model, vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        user_defined_symbols=["<image>", "<ecg>", "<eeg>"], minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())
