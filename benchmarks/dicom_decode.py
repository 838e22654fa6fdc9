"""DICOM pixel decoding: the C++ path (megamed.data.dicom.decode_pixels) against pydicom's
`pixel_array`, and a plain memcpy of the decoded bytes as the physical ceiling.

    python benchmarks/dicom_decode.py               # 512 x 512 x 200 CT series, about a minute
    python benchmarks/dicom_decode.py --slices 40   # smaller and quicker

Data, all held in memory as file bytes so that disk speed is not measured: the sample files
that ship inside pydicom (those decoded here and by pydicom), and a generated 16-bit CT
series written by pydicom both native (Explicit VR Little Endian) and RLE Lossless (pydicom's
own encoder), with the header of a real CT file. Every decoded array is checked against
pydicom's before timing. Two cache regimes: "hot" times each image right after its bytes were
read (a loader decodes a file it has just read; the targets apply here), "cold" decodes the
whole set back to back, so the CT series (100 MB at 200 slices) streams from memory. Medians
over passes. pydicom's RLE reference is timed on at most --reference-slices slices to keep the
run short (its rate per image is what is compared). JSON to benchmarks/results/dicom_decode.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid)

from megamed.data.dicom import decode_pixels
from megamed.monitoring.plots import chart_table

CHART = dict(x=("set", "cache"), y=("mb_per_s.ours", "mb_per_s.pydicom", "mb_per_s.memcpy"),
             ylabel="decoded MB/s", log=True, title="DICOM decode: megamed vs pydicom vs memcpy")

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"native": {"pydicom": 20.0, "memcpy": 2.0}, "rle": {"pydicom": 10.0}}
DECODED_HERE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                DeflatedExplicitVRLittleEndian, RLELossless}


def pydicom_pixels(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


def shipped_samples() -> list[bytes]:
    """pydicom's sample files in a syntax decoded here that pydicom itself decodes."""
    samples = []
    for path in sorted(get_testdata_files()):
        if not os.path.isfile(path):
            continue
        data = Path(path).read_bytes()
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if ds.file_meta.get("TransferSyntaxUID") in DECODED_HERE:
                ds.pixel_array
                samples.append(data)
        except Exception:  # noqa: BLE001 - pydicom cannot decode it: no reference to time
            continue
    return samples


def ct_series(slices: int, size: int = 512) -> tuple[list[bytes], list[bytes]]:
    """File bytes of a CT series, native and RLE: the header of pydicom's CT_small.dcm (a
    real scanner's, about 100 elements) over a water-cylinder phantom with inserts and
    noise, 12 bits stored, HU = stored - 1024."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] - size / 2
    radius = np.hypot(yy, xx)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    native, rle = [], []
    for k in range(slices):
        body = np.where(radius < size * 0.42, 1024.0, 24.0)  # water 0 HU, air -1000 HU
        body[np.hypot(yy - 60, xx + 80) < 40 + 10 * np.sin(k / 9)] = 1024 + 700  # bone insert
        body[np.hypot(yy + 90, xx - 50) < 55] = 1024 - 800  # lung-like insert
        pixels = np.clip(body + rng.normal(0, 12, body.shape), 0, 4095).astype(np.uint16)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [0, 0, 1.25 * k]
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
        native.append(to_bytes(ds))
        ds.compress(RLELossless, encoding_plugin="pydicom")
        rle.append(to_bytes(ds))
    return native, rle


def to_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def cold_pass(fn, items, repeats: int) -> float:
    """Median seconds of one pass of fn over every item, back to back: a set larger than the
    caches streams from memory (one warm-up pass first)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def hot_pass(fn, items, repeats: int) -> float:
    """Median over passes of the summed time of fn(item), each item's bytes read (so cached)
    just before, untimed: what a loader sees right after reading a file."""
    views = [np.frombuffer(item, np.uint8) for item in items]
    times = []
    for _ in range(repeats + 1):
        total = 0.0
        for item, view in zip(items, views):
            view.max()
            start = time.perf_counter()
            fn(item)
            total += time.perf_counter() - start
        times.append(total)
    return statistics.median(times[1:])


def measure(name: str, files: list[bytes], repeats: int, reference_files: list[bytes],
            timer) -> dict:
    decoded = [decode_pixels(f) for f in files]
    for data, ours in zip(reference_files, decoded):
        ref = pydicom_pixels(data)
        if ours.shape != ref.shape or ours.dtype != ref.dtype or not np.array_equal(ours, ref):
            raise SystemExit(f"{name}: decode_pixels disagrees with pydicom; not timing it")
    decoded_bytes = sum(a.nbytes for a in decoded)
    flat = [np.frombuffer(a.tobytes(), np.uint8) for a in decoded]
    seconds = {"ours": timer(decode_pixels, files, repeats), "memcpy": timer(np.copy, flat, repeats),
               "pydicom": timer(pydicom_pixels, reference_files, max(1, repeats // 2))}
    per_image = {k: v / (len(reference_files) if k == "pydicom" else len(files))
                 for k, v in seconds.items()}
    mb_per_image = decoded_bytes / len(files) / 1e6
    return {
        "set": name, "cache": timer.__name__.split("_")[0], "images": len(files),
        "reference_images": len(reference_files), "decoded_mb": decoded_bytes / 1e6,
        "file_mb": sum(map(len, files)) / 1e6, "median_pass_s": seconds,
        "images_per_s": {k: 1 / v for k, v in per_image.items()},
        "mb_per_s": {k: mb_per_image / v for k, v in per_image.items()},
        "speedup_vs_pydicom": per_image["pydicom"] / per_image["ours"],
        "ours_over_memcpy": per_image["ours"] / per_image["memcpy"],
    }


def machine() -> dict:
    import megamed._dicom

    return {"node": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0], "numpy": np.__version__,
            "pydicom": pydicom.__version__, "extension": Path(megamed._dicom.__file__).name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200, help="CT series length (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per set (median)")
    parser.add_argument("--reference-slices", type=int, default=40,
                        help="slices on which pydicom's RLE decoder is timed (default 40)")
    parser.add_argument("--out", type=Path, default=RESULTS / "dicom_decode.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom's notes on odd sample files

    start = time.perf_counter()
    samples = shipped_samples()
    native, rle = ct_series(args.slices)
    print(f"data: {len(samples)} pydicom samples, {args.slices} CT slices 512x512 16-bit native "
          f"and RLE, made in {time.perf_counter() - start:.1f} s")

    reference = rle[:args.reference_slices]
    rows = [measure("pydicom samples", samples, args.repeats, samples, hot_pass),
            measure("CT native", native, args.repeats, native, hot_pass),
            measure("CT native", native, args.repeats, native, cold_pass),
            measure("CT RLE", rle, args.repeats, reference, hot_pass),
            measure("CT RLE", rle, args.repeats, reference, cold_pass)]
    header = (f"{'set':<16}{'cache':>6}{'images':>7}{'MB':>7}{'ours img/s':>11}{'ours MB/s':>10}"
              f"{'pydicom img/s':>14}{'memcpy MB/s':>12}{'x pydicom':>10}{'/ memcpy':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['set']:<16}{r['cache']:>6}{r['images']:>7}{r['decoded_mb']:>7.1f}"
              f"{r['images_per_s']['ours']:>11.0f}{r['mb_per_s']['ours']:>10.0f}"
              f"{r['images_per_s']['pydicom']:>14.0f}{r['mb_per_s']['memcpy']:>12.0f}"
              f"{r['speedup_vs_pydicom']:>10.1f}{r['ours_over_memcpy']:>9.2f}")
    native_row, rle_row = rows[1], rows[3]  # targets apply to decoding bytes just read
    checks = {
        "native_at_least_20x_pydicom": native_row["speedup_vs_pydicom"] >= TARGETS["native"]["pydicom"],
        "native_within_2x_memcpy": native_row["ours_over_memcpy"] <= TARGETS["native"]["memcpy"],
        "rle_at_least_10x_pydicom": rle_row["speedup_vs_pydicom"] >= TARGETS["rle"]["pydicom"],
    }
    for name, ok in checks.items():
        print(f"{name}: {'yes' if ok else 'NO'}")
    result = {"benchmark": "dicom_decode", "machine": machine(),
              "reference": "pydicom Dataset.pixel_array from the same bytes; memcpy (numpy copy) "
                           "of the decoded bytes as the ceiling",
              "slices": args.slices, "repeats": args.repeats, "targets": TARGETS,
              "checks": checks, "rows": rows, "runtime_s": time.perf_counter() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['runtime_s']:.0f} s) and "
          f"{chart_table(result, path=str(args.out.with_suffix('.png')), **CHART)}")


if __name__ == "__main__":
    main()
