"""Training-batch throughput per CPU core: megamed's ShardLoader against the seed's pipeline.

    python benchmarks/dataloader.py                 # 48 studies, 3 interleaved passes each
    python benchmarks/dataloader.py --studies 16 --passes 1

One study = a 512 x 512 CT slice + a 12-lead ECG (10 s at 500 Hz) + a ~250-word report. The
same raw content is written twice, both with webdataset's TarWriter:
  seed   DICOM-in-tar shards as in the user's plan (`.dcm` file bytes, `.npy` ECG, `.txt`),
         read the seed's way: plain `webdataset.WebDataset` streaming, pydicom decode, HU,
         three CT windows, tokenization and packing inside the pipeline, then batching;
  ours   preprocessed shards per specs/SHARDS_FORMAT.md (windowed float16 image, float16 ECG,
         text, manifest with member offsets), read by `megamed.data.loader.ShardLoader`
         (random access by offset, sha256 check of every shard, tokenization and packing).
Both produce the same tensors (checked on the first batch before timing). One process, one
torch thread, no worker processes: samples per CPU-second of the process is the rate per
core (quoted; wall-clock rates beside it depend on the machine's other load). The page cache is warmed by one
untimed pass of each; passes alternate seed/ours and the median is quoted. The headline
rate includes hashing every shard once (as a rank's first epoch does); a second row gives
the rate once the shards are verified (later epochs).
JSON to benchmarks/results/dataloader.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import sentencepiece
import torch
import webdataset as wds

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "data")]
from dicom_decode import ct_series  # noqa: E402  (a real CT header over a phantom)
from shard_fixture import REPORT_WORDS, train_tokenizer, write_shards  # noqa: E402

from megamed.data.loader import LoaderConfig, ShardLoader  # noqa: E402
from megamed.data.packing import TokenBudget, pack_study, special_ids  # noqa: E402

RESULTS = HERE / "results"
WINDOWS = ((40, 400), (50, 350), (-600, 1500))  # soft tissue, mediastinum, lung (center, width)
SEQ_LENGTH, MICRO_BATCH, TARGET = 1024, 8, 100.0


def windowed(hounsfield: np.ndarray) -> np.ndarray:
    """[3, H, W] float16 in [0, 1], one channel per CT window."""
    return np.stack([np.clip((hounsfield - (c - w / 2)) / w, 0, 1)
                     for c, w in WINDOWS]).astype(np.float16)


def hounsfield(ds) -> np.ndarray:
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def raw_studies(n: int, rng) -> list[dict]:
    native, _ = ct_series(n)
    t = np.arange(5000) / 500.0
    studies = []
    for i, dcm in enumerate(native):
        ecg = (np.sin(2 * np.pi * 1.2 * t)[None] * rng.uniform(0.5, 1.5, (12, 1))
               + rng.normal(0, 0.05, (12, 5000))).astype(np.float32)
        report = " ".join(rng.choice(REPORT_WORDS, size=250))
        studies.append({"key": f"study{i:05d}", "dcm": dcm, "ecg": ecg, "report": report})
    return studies


def write_seed_shards(out: Path, studies: list[dict], per_shard: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    urls = []
    for start in range(0, len(studies), per_shard):
        url = str(out / f"seed-{len(urls):04d}.tar")
        with wds.TarWriter(url) as writer:
            for s in studies[start:start + per_shard]:
                ecg = io.BytesIO()
                np.save(ecg, s["ecg"])
                writer.write({"__key__": s["key"], "dcm": s["dcm"], "npy": ecg.getvalue(),
                              "txt": s["report"], "json": {"modality": ["text", "ct", "ecg"]}})
        urls.append(url)
    return urls


def write_our_shards(out: Path, studies: list[dict], per_shard: int) -> None:
    samples = []
    for s in studies:
        image = windowed(hounsfield(pydicom.dcmread(io.BytesIO(s["dcm"]))))
        samples.append({"__key__": s["key"], "txt": s["report"], "img.npy": image,
                        "ecg.npy": s["ecg"].astype(np.float16),
                        "json": {"modalities": ["ecg", "image"],
                                 "image": {"modality": "CT", "shape": list(image.shape)},
                                 "ecg": {"shape": [12, 5000], "rate_hz": 500}}})
    write_shards(out, samples, per_shard)


def seed_pipeline(urls: list[str], tokenizer, budget: TokenBudget):
    """The user's plan: stream, decode DICOM with pydicom inside the pipeline, batch."""
    ids = special_ids(tokenizer)

    def decode(sample):
        image = windowed(hounsfield(pydicom.dcmread(io.BytesIO(sample["dcm"]))))
        ecg = np.load(io.BytesIO(sample["npy"])).astype(np.float16)
        row, mask = pack_study(tokenizer.encode(sample["txt"].decode("utf-8")),
                               ("image", "ecg"), SEQ_LENGTH, budget, ids)
        return row, mask, image, ecg

    def collate(items):
        rows, masks, images, ecgs = (np.stack(x) for x in zip(*items))
        rows = torch.from_numpy(rows)
        return {"tokens": rows[:, :-1], "targets": rows[:, 1:],
                "loss_mask": torch.from_numpy(masks), "images": torch.from_numpy(images),
                "ecg": torch.from_numpy(ecgs)}

    return (wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(decode)
            .batched(MICRO_BATCH, collation_fn=collate, partial=False))


def our_loader(root: Path, tokenizer, budget: TokenBudget, num_samples: int,
               verify_sha256: bool = True) -> ShardLoader:
    config = LoaderConfig(seq_length=SEQ_LENGTH, global_batch=num_samples, micro_batch=MICRO_BATCH,
                          num_workers=0, budget=budget, verify_sha256=verify_sha256)
    return ShardLoader(root, tokenizer, config)


def timed(run) -> dict:
    """Samples per CPU-second of this process (per core, robust to other load on a shared
    machine) and per wall-clock second."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = run()
    return {"per_cpu_s": n / (time.process_time() - cpu), "per_wall_s": n / (time.perf_counter() - wall)}


def time_seed(urls, tokenizer, budget) -> dict:
    return timed(lambda: sum(len(b["tokens"]) for b in seed_pipeline(urls, tokenizer, budget)))


def time_ours(root, tokenizer, budget, num_samples, verify_sha256=True) -> dict:
    # Built inside the timing: opening and sha256-checking the shards is part of the cost
    # (a rank pays it once per shard; verify_sha256=False is the rate after that).
    return timed(lambda: sum(len(b.tokens) for b in next(iter(
        our_loader(root, tokenizer, budget, num_samples, verify_sha256)))))


def check_same_output(urls, root, tokenizer, budget, num_samples) -> None:
    seed_batch = next(iter(seed_pipeline(urls, tokenizer, budget)))
    loader = our_loader(root, tokenizer, budget, num_samples)
    keys = loader.manifest.keys
    by_key = {k: i for i, k in enumerate(keys)}
    # The seed streams in manifest order; pick those samples out of our loader.
    ours = {int(i): (b, r) for b in next(iter(loader)) for r, i in enumerate(b.sample_ids)}
    for row in range(MICRO_BATCH):
        batch, r = ours[by_key[f"study{row:05d}"]]
        for name in ("tokens", "targets", "loss_mask", "images", "ecg"):
            if not torch.equal(getattr(batch, name)[r], seed_batch[name][row]):
                raise AssertionError(f"{name} of study {row} differs between the pipelines")


def machine() -> dict:
    return {"node": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "pydicom": pydicom.__version__,
            "webdataset": getattr(wds, "__version__", "?"),
            "sentencepiece": sentencepiece.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=48, help="multiple of 8 (default 48)")
    parser.add_argument("--per-shard", type=int, default=16)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "dataloader.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer, budget = train_tokenizer(), TokenBudget(image=64, ecg=32, eeg=32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = raw_studies(args.studies, np.random.default_rng(0))
        urls = write_seed_shards(tmp / "seed", studies, args.per_shard)
        write_our_shards(tmp / "ours", studies, args.per_shard)
        check_same_output(urls, tmp / "ours", tokenizer, budget, args.studies)
        time_seed(urls, tokenizer, budget)  # warm the page cache
        time_ours(tmp / "ours", tokenizer, budget, args.studies)
        seed, ours, verified = [], [], []
        for _ in range(args.passes):
            seed.append(time_seed(urls, tokenizer, budget))
            ours.append(time_ours(tmp / "ours", tokenizer, budget, args.studies))
            verified.append(time_ours(tmp / "ours", tokenizer, budget, args.studies, False))
        sizes = {"seed_shard_bytes_per_study": sum(os.path.getsize(u) for u in urls) / args.studies,
                 "our_shard_bytes_per_study": sum(p.stat().st_size for p in
                                                  (tmp / "ours").glob("*.tar")) / args.studies}
    median = {name: {unit: statistics.median(r[unit] for r in runs)
                     for unit in ("per_cpu_s", "per_wall_s")}
              for name, runs in (("seed_pipeline", seed), ("shard_loader", ours),
                                 ("shard_loader_shards_verified", verified))}
    headline = median["shard_loader"]["per_cpu_s"]
    result = {"machine": machine(), "loadavg_1min": os.getloadavg()[0],
              "studies": args.studies, "micro_batch": MICRO_BATCH, "seq_length": SEQ_LENGTH,
              "sample": "CT 512x512 (3 windows) + ECG 12x5000 + report",
              "samples_per_s_per_core": {k: v["per_cpu_s"] for k, v in median.items()},
              "samples_per_wall_s_one_process": {k: v["per_wall_s"] for k, v in median.items()},
              "passes": {"seed_pipeline": seed, "shard_loader": ours,
                         "shard_loader_shards_verified": verified},
              "speedup_per_core": headline / median["seed_pipeline"]["per_cpu_s"],
              "target_samples_per_s_per_core": TARGET, "meets_target": headline >= TARGET,
              **sizes}
    print(f"{'pipeline':<30}{'samples per CPU-s':>20}{'samples per wall-s':>20}")
    for name, label in (("seed_pipeline", "seed: WebDataset + pydicom"),
                        ("shard_loader", "megamed ShardLoader"),
                        ("shard_loader_shards_verified", "  once shards are verified")):
        print(f"{label:<30}{median[name]['per_cpu_s']:>20.1f}{median[name]['per_wall_s']:>20.1f}")
    print(f"speedup per core {result['speedup_per_core']:.2f}x; target >= {TARGET:.0f} samples/s "
          f"per core: {'met' if result['meets_target'] else 'NOT met'} "
          f"(1-min load average {result['loadavg_1min']:.1f} on {os.cpu_count()} CPUs)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
