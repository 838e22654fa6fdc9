"""The DICOM fast path of this checkout against another checkout's (e.g. main before a
speed-up), in the same process, rounds interleaved so both see the same machine load.

    python benchmarks/dicom_fast_ab.py --baseline /work/main [--rounds 7] [--repeats 100]
                                       [--folder RAW]

Measured as benchmarks/deid.py measures its "fast path (dicom_fast)" line: fast_deidentify
over the pydicom shipped files CT_small, MR_small, rtplan, waveform_ecg and JPEG2000 (file
bytes in memory to file bytes, outputs kept in a list), files / CPU seconds of this process,
medians of the rounds; per file and all files mixed. The baseline module is loaded from its
checkout by path; it shares this checkout's megamed.data.deid.dicom (the rules). Both must
give the same bytes for every file. Repeating five files keeps every cache warm (decisions,
pseudonyms, UIDs); `--folder RAW` also times every DICOM file under RAW once per round with
cold caches (both modules loaded afresh, a new Pseudonymizer): a folder processed once, e.g.
a `megamed.data.demo` corpus. Writes benchmarks/results/dicom_fast_ab.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydicom  # noqa: E402

from megamed.data.deid import Pseudonymizer, dicom  # noqa: E402

NAMES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "waveform_ecg.dcm", "JPEG2000.dcm"]
RESULTS = Path(__file__).parent / "results" / "dicom_fast_ab.json"


def load(checkout: str | Path, name: str):
    """A fresh copy of the checkout's dicom_fast module (its caches empty)."""
    path = Path(checkout) / "megamed" / "data" / "deid" / "dicom_fast.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def folder_rates(checkouts: dict, folder: str, rounds: int) -> dict:
    """Files per CPU second over every DICOM file under `folder` once, caches cold."""
    files = sorted(Path(d) / f for d, _, names in os.walk(folder) for f in names)
    raws = [r for r in (p.read_bytes() for p in files) if r[128:132] == b"DICM"]
    rates: dict = {label: [] for label in checkouts}
    outputs = {}
    for _ in range(rounds):
        for label, checkout in checkouts.items():
            deidentify = load(checkout, f"{label}_dicom_fast").fast_deidentify
            dicom._shift_one.cache_clear()
            ps = Pseudonymizer(b"benchmark-key-0123456789")
            t0 = time.process_time()
            outputs[label] = [deidentify(r, ps, allow_burned_in=True) for r in raws]
            rates[label].append(len(raws) / (time.process_time() - t0))
    return {"files": len(raws), "bytes": sum(map(len, raws)),
            "same_output_bytes": len(set(map(tuple, outputs.values()))) == 1,
            "files_per_cpu_s": {k: statistics.median(v) for k, v in rates.items()}}


def rate(deidentify, raws: list[bytes], repeats: int, ps) -> float:
    """Files per CPU second of one round (outputs kept, as benchmarks/deid.py keeps them)."""
    t0 = time.process_time()
    [deidentify(r, ps, allow_burned_in=True) for _ in range(repeats) for r in raws]
    return repeats * len(raws) / (time.process_time() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, metavar="CHECKOUT")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=100, help="files per file per round")
    ap.add_argument("--folder", help="also every DICOM file under this folder once per round, "
                                     "caches cold")
    args = ap.parse_args()
    folder = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    raws = {n: open(os.path.join(folder, n), "rb").read() for n in NAMES}
    ps = Pseudonymizer(b"benchmark-key-0123456789")
    checkouts = {"baseline": args.baseline, "this": Path(__file__).resolve().parents[1]}
    paths = {label: load(c, f"{label}_dicom_fast").fast_deidentify
             for label, c in checkouts.items()}
    same = {n: paths["baseline"](r, ps, allow_burned_in=True) ==
            paths["this"](r, ps, allow_burned_in=True) for n, r in raws.items()}
    rates: dict = {p: {k: [] for k in NAMES + ["all"]} for p in paths}
    for _ in range(args.rounds):
        for label, deidentify in paths.items():
            rates[label]["all"].append(rate(deidentify, list(raws.values()),
                                            args.repeats // len(raws) * 2, ps))
            for n, r in raws.items():
                rates[label][n].append(rate(deidentify, [r], args.repeats, ps))
    medians = {p: {k: statistics.median(v) for k, v in r.items()} for p, r in rates.items()}
    print(f"| file | baseline ({args.baseline}) files/s | this checkout | ratio |\n|---|---|---|---|")
    for k in NAMES + ["all"]:
        a, b = medians["baseline"][k], medians["this"][k]
        print(f"| {k} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
    print(f"same output bytes: {same}")
    folder = None
    if args.folder:
        folder = folder_rates(checkouts, args.folder, args.rounds)
        r = folder["files_per_cpu_s"]
        print(f"{args.folder}: {folder['files']} DICOM files once, caches cold: baseline "
              f"{r['baseline']:.0f}, this checkout {r['this']:.0f} files/s "
              f"({r['this'] / r['baseline']:.2f}x); same output bytes: "
              f"{folder['same_output_bytes']}")
        same["folder"] = folder["same_output_bytes"]
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
           "baseline": args.baseline, "rounds": args.rounds, "repeats": args.repeats,
           "same_output_bytes": same, "files_per_cpu_s": medians,
           "folder": folder and {"path": args.folder, **folder}}
    os.makedirs(RESULTS.parent, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
