"""DICOM pixel decoding: the C++ path (megamed.data.dicom.decode_pixels) against pydicom's
`pixel_array`, and a plain memcpy of the decoded bytes as the physical ceiling.

    python benchmarks/dicom_decode.py               # 512 x 512 x 200 CT series, about a minute
    python benchmarks/dicom_decode.py --slices 40   # smaller and quicker

Compressed rows: the CT series as JPEG Lossless (ours against pydicom + pylibjpeg-libjpeg,
and GDCM through pydicom where python-gdcm is installed), and the JPEG-LS / JPEG 2000 files
pydicom and pydicom-data ship (ours through the codec against pydicom through the same
codec). Series rows: read_series on --series-slices 512x512 slices, native and JPEG
Lossless, at 1 and 2 threads against pydicom slice by slice.

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
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless,
                         JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, RLELossless,
                         generate_uid)

from megamed.data.dicom import decode_pixels, read_series
from megamed.monitoring.plots import chart_table

CHART = dict(x=("set", "cache"), y=("mb_per_s.ours", "mb_per_s.pydicom", "mb_per_s.memcpy"),
             ylabel="decoded MB/s", log=True, title="DICOM decode: megamed vs pydicom vs memcpy")

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"native": {"pydicom": 20.0, "memcpy": 2.0}, "rle": {"pydicom": 10.0},
           "jpeg_lossless": {"pydicom": 2.0}, "series": {"scaling_1_to_2_threads": 1.7}}
DECODED_HERE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                DeflatedExplicitVRLittleEndian, RLELossless}


def pydicom_pixels(data: bytes, plugin: str = "") -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(data))
    if plugin:
        ds.pixel_array_options(decoding_plugin=plugin)
    return ds.pixel_array


def shipped_compressed(syntaxes: set[str], max_mb: float = 4.0) -> list[bytes]:
    """pydicom's and pydicom-data's sample files in `syntaxes` that pydicom decodes and that
    decode to at most `max_mb` (the big radiographs would dominate the row)."""
    folders = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # pydicom-data
        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    samples = []
    for path in sorted(p for folder in folders for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if ds.file_meta.get("TransferSyntaxUID") in syntaxes and ds.pixel_array.nbytes <= max_mb * 1e6:
                samples.append(data)
        except Exception:  # noqa: BLE001 - no pixels, or pydicom cannot decode it
            continue
    return samples


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


def ct_series(slices: int, rle_slices: int | None = None, size: int = 512) -> tuple[list[bytes], list[bytes]]:
    """File bytes of a CT series, native and (the first `rle_slices`) RLE: the header of pydicom's CT_small.dcm (a
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
        if rle_slices is None or k < rle_slices:  # pydicom's RLE encoder is slow: only the slices timed as RLE
            ds.compress(RLELossless, encoding_plugin="pydicom")
            rle.append(to_bytes(ds))
    return native, rle


def jpeg_lossless(native: list[bytes], distinct: int) -> list[bytes]:
    """The series as JPEG Lossless SV1, encoded by the test encoder
    (tests/data/jpeg_lossless_encoder.py, pure numpy and slow): `distinct` slices are
    encoded, and slice k carries the pixels of slice k % distinct under its own header."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
    from jpeg_lossless_encoder import encode

    frames = [encode(pydicom_pixels(native[k]), 16) for k in range(min(distinct, len(native)))]
    out = []
    for k, data in enumerate(native):
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.PixelData = encapsulate([frames[k % len(frames)]])
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        out.append(to_bytes(ds))
    return out


def series_row(name: str, files: list[bytes], repeats: int, reference_slices: int) -> dict:
    """read_series at 1 and 2 threads against pydicom slice by slice (dcmread, pixel_array,
    slope/intercept, sort by position, stack) on the first `reference_slices` files."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for k, data in enumerate(files):
            paths.append(os.path.join(folder, f"{k:04d}.dcm"))
            Path(paths[-1]).write_bytes(data)

        def pydicom_series(subset):
            slices = [pydicom.dcmread(p) for p in subset]
            slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
            return np.stack([ds.pixel_array.astype(np.float32) * np.float32(ds.RescaleSlope)
                             + np.float32(ds.RescaleIntercept) for ds in slices])

        reference = paths[:reference_slices]
        np.testing.assert_array_equal(read_series(reference, threads=2).volume, pydicom_series(reference))
        seconds = {}
        for _ in range(repeats):  # interleaved, so that load from other processes hits all alike
            for key, fn in (("threads_1", lambda: read_series(paths, threads=1)),
                            ("threads_2", lambda: read_series(paths, threads=2)),
                            ("pydicom", lambda: pydicom_series(reference))):
                start = time.perf_counter()
                fn()
                seconds.setdefault(key, []).append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    per_slice = {k: v / (reference_slices if k == "pydicom" else len(files)) for k, v in median.items()}
    return {"set": name, "slices": len(files), "reference_slices": reference_slices,
            "median_s": median, "slices_per_s": {k: 1 / v for k, v in per_slice.items()},
            "scaling_1_to_2_threads": median["threads_1"] / median["threads_2"],
            "speedup_vs_pydicom_1_thread": per_slice["pydicom"] / per_slice["threads_1"],
            "speedup_vs_pydicom_2_threads": per_slice["pydicom"] / per_slice["threads_2"]}


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
            timer, plugin: str = "", gdcm: bool = False) -> dict:
    """Ours vs pydicom (with `plugin`, and with GDCM too when `gdcm`) and memcpy."""
    decoded = [decode_pixels(f) for f in files]
    for data, ours in zip(reference_files, decoded):
        ref = pydicom_pixels(data, plugin)
        if ours.shape != ref.shape or ours.dtype != ref.dtype or not np.array_equal(ours, ref):
            raise SystemExit(f"{name}: decode_pixels disagrees with pydicom; not timing it")
    decoded_bytes = sum(a.nbytes for a in decoded)
    flat = [np.frombuffer(a.tobytes(), np.uint8) for a in decoded]
    seconds = {"ours": timer(decode_pixels, files, repeats), "memcpy": timer(np.copy, flat, repeats),
               "pydicom": timer(lambda f: pydicom_pixels(f, plugin), reference_files, max(1, repeats // 2))}
    if gdcm:
        seconds["gdcm"] = timer(lambda f: pydicom_pixels(f, "gdcm"), reference_files, max(1, repeats // 2))
    per_image = {k: v / (len(reference_files) if k in ("pydicom", "gdcm") else len(files))
                 for k, v in seconds.items()}
    mb_per_image = decoded_bytes / len(files) / 1e6
    return {
        "set": name, "cache": timer.__name__.split("_")[0], "images": len(files),
        "reference_images": len(reference_files), "decoded_mb": decoded_bytes / 1e6,
        "file_mb": sum(map(len, files)) / 1e6, "median_pass_s": seconds,
        "images_per_s": {k: 1 / v for k, v in per_image.items()},
        "mb_per_s": {k: mb_per_image / v for k, v in per_image.items()},
        "speedup_vs_pydicom": per_image["pydicom"] / per_image["ours"],
        "speedup_vs_gdcm": per_image["gdcm"] / per_image["ours"] if gdcm else None,
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
    parser.add_argument("--series-slices", type=int, default=300,
                        help="slices of the series decoded by read_series (default 300)")
    parser.add_argument("--jpeg-distinct", type=int, default=24,
                        help="distinct JPEG Lossless slices the slow test encoder writes")
    parser.add_argument("--out", type=Path, default=RESULTS / "dicom_decode.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom's notes on odd sample files

    start = time.perf_counter()
    samples = shipped_samples()
    native, rle = ct_series(max(args.slices, args.series_slices), args.slices)
    jpeg = jpeg_lossless(native[:args.series_slices], args.jpeg_distinct)
    native, rle, series_native = native[:args.slices], rle[:args.slices], native[:args.series_slices]
    try:
        import gdcm  # noqa: F401 - GDCM's decoder, where python-gdcm installs
        have_gdcm = True
    except ImportError:
        have_gdcm = False
    jls = shipped_compressed({JPEGLSLossless, JPEGLSNearLossless})
    j2k = shipped_compressed({JPEG2000Lossless, "1.2.840.10008.1.2.4.91"})
    print(f"data: {len(samples)} pydicom samples, {args.slices} CT slices 512x512 16-bit native "
          f"and RLE, made in {time.perf_counter() - start:.1f} s")

    reference = rle[:args.reference_slices]
    rows = [measure("pydicom samples", samples, args.repeats, samples, hot_pass),
            measure("CT native", native, args.repeats, native, hot_pass),
            measure("CT native", native, args.repeats, native, cold_pass),
            # pydicom's own RLE decoder, also when python-gdcm is installed for the GDCM row
            measure("CT RLE", rle, args.repeats, reference, hot_pass, plugin="pydicom"),
            measure("CT RLE", rle, args.repeats, reference, cold_pass, plugin="pydicom"),
            measure("CT JPEG LL", jpeg[:args.slices], args.repeats, jpeg[:args.reference_slices],
                    hot_pass, plugin="pylibjpeg", gdcm=have_gdcm),
            measure("JPEG-LS samples", jls, args.repeats, jls, hot_pass, plugin="pyjpegls"),
            measure("JPEG 2000 smpl", j2k, args.repeats, j2k, hot_pass, plugin="pylibjpeg")]
    header = (f"{'set':<16}{'cache':>6}{'images':>7}{'MB':>7}{'ours img/s':>11}{'ours MB/s':>10}"
              f"{'pydicom img/s':>14}{'memcpy MB/s':>12}{'x pydicom':>10}{'/ memcpy':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['set']:<16}{r['cache']:>6}{r['images']:>7}{r['decoded_mb']:>7.1f}"
              f"{r['images_per_s']['ours']:>11.0f}{r['mb_per_s']['ours']:>10.0f}"
              f"{r['images_per_s']['pydicom']:>14.0f}{r['mb_per_s']['memcpy']:>12.0f}"
              f"{r['speedup_vs_pydicom']:>10.1f}{r['ours_over_memcpy']:>9.2f}")
    series = [series_row("series native", series_native, args.repeats, args.reference_slices),
              series_row("series JPEG LL", jpeg, max(1, args.repeats // 2), args.reference_slices)]
    print(f"\n{'series':<16}{'slices':>7}{'1 thread s':>11}{'2 threads s':>12}{'scaling':>8}"
          f"{'x pydicom 1t':>13}{'x pydicom 2t':>13}")
    for r in series:
        print(f"{r['set']:<16}{r['slices']:>7}{r['median_s']['threads_1']:>11.2f}"
              f"{r['median_s']['threads_2']:>12.2f}{r['scaling_1_to_2_threads']:>8.2f}"
              f"{r['speedup_vs_pydicom_1_thread']:>13.1f}{r['speedup_vs_pydicom_2_threads']:>13.1f}")
    if have_gdcm:
        print(f"CT JPEG LL: ours {rows[5]['speedup_vs_gdcm']:.1f}x GDCM (through pydicom)")
    native_row, rle_row = rows[1], rows[3]  # targets apply to decoding bytes just read
    checks = {
        "native_at_least_20x_pydicom": native_row["speedup_vs_pydicom"] >= TARGETS["native"]["pydicom"],
        "native_within_2x_memcpy": native_row["ours_over_memcpy"] <= TARGETS["native"]["memcpy"],
        "rle_at_least_10x_pydicom": rle_row["speedup_vs_pydicom"] >= TARGETS["rle"]["pydicom"],
        "jpeg_lossless_at_least_2x_pydicom_libjpeg":
            rows[5]["speedup_vs_pydicom"] >= TARGETS["jpeg_lossless"]["pydicom"],
        "series_scales_1_7x_from_1_to_2_threads":
            max(r["scaling_1_to_2_threads"] for r in series) >= TARGETS["series"]["scaling_1_to_2_threads"],
    }
    for name, ok in checks.items():
        print(f"{name}: {'yes' if ok else 'NO'}")
    result = {"benchmark": "dicom_decode", "machine": machine(),
              "reference": "pydicom Dataset.pixel_array from the same bytes; memcpy (numpy copy) "
                           "of the decoded bytes as the ceiling",
              "slices": args.slices, "repeats": args.repeats, "targets": TARGETS,
              "checks": checks, "rows": rows, "series": series,
              "load_average": os.getloadavg(), "runtime_s": time.perf_counter() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['runtime_s']:.0f} s) and "
          f"{chart_table(result, path=str(args.out.with_suffix('.png')), **CHART)}")


if __name__ == "__main__":
    main()
