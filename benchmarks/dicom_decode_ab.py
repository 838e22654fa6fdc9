"""DICOM decode speed, before and after a change, in one process: a base build of
megamed._dicom (A, e.g. main's), a second copy of it (A2: the harness's own noise) and the
checkout's build (B) decode each image in rotating order, so load on a shared machine hits
all three alike. Per-image medians over rounds, summed per set; B/A beside A2/A.

    # build main's extension somewhere, then:
    git archive main csrc setup.py megamed | tar -x -C /tmp/base && (cd /tmp/base && python setup.py -q build_ext --inplace)
    python benchmarks/dicom_decode_ab.py --base /tmp/base/megamed/_dicom.*.so

Data: the sets of benchmarks/dicom_decode.py (pydicom's samples, a CT series native and
RLE), "hot" (each file's bytes touched just before). Every B array is checked against A's.
JSON to benchmarks/results/dicom_decode_ab.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from importlib.machinery import ExtensionFileLoader
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dicom_decode as sets  # noqa: E402

import megamed._dicom as checkout  # noqa: E402


def load_extension(package: str, path: str):
    """The extension at `path` as `package`._dicom (its init symbol is PyInit__dicom)."""
    loader = ExtensionFileLoader(f"{package}._dicom", path)
    module = module_from_spec(spec_from_file_location(f"{package}._dicom", path, loader=loader))
    loader.exec_module(module)
    return module


def per_image_us(modules: dict, files: list[bytes], rounds: int) -> dict[str, float]:
    times = {k: [[] for _ in files] for k in modules}
    names = list(modules)
    views = [np.frombuffer(f, np.uint8) for f in files]
    for r in range(rounds):
        for i, data in enumerate(files):
            shift = (r + i) % len(names)
            for name in names[shift:] + names[:shift]:
                views[i].max()
                start = time.perf_counter()
                modules[name].read(data)
                times[name][i].append(time.perf_counter() - start)
    return {k: sum(statistics.median(t) for t in v) / len(files) * 1e6 for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the base build's _dicom*.so")
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--out", type=Path, default=sets.RESULTS / "dicom_decode_ab.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as scratch:  # a second file: dlopen would share the first
        copy = str(shutil.copy(args.base, Path(scratch) / Path(args.base).name))
        modules = {"A": load_extension("base", args.base), "A2": load_extension("base_copy", copy), "B": checkout}
        native, rle = sets.ct_series(args.slices)
        rows = []
        print(f"{'set':<16}{'images':>7}{'A us':>9}{'A2 us':>9}{'B us':>9}{'A2/A':>7}{'B/A':>7}")
        for name, files in (("pydicom samples", sets.shipped_samples()), ("CT native", native), ("CT RLE", rle)):
            for data in files:
                a, b = modules["A"].read(data)["pixels"], modules["B"].read(data)["pixels"]
                if not ((a is None and b is None) or np.array_equal(a, b)):
                    raise SystemExit(f"{name}: B decodes differently from A; not timing it")
            us = per_image_us(modules, files, args.rounds)
            rows.append({"set": name, "images": len(files), "us_per_image": us,
                         "a2_over_a": us["A2"] / us["A"], "b_over_a": us["B"] / us["A"]})
            print(f"{name:<16}{len(files):>7}{us['A']:>9.1f}{us['A2']:>9.1f}{us['B']:>9.1f}"
                  f"{us['A2'] / us['A']:>7.3f}{us['B'] / us['A']:>7.3f}")
    result = {"benchmark": "dicom_decode_ab", "machine": sets.machine(), "base": args.base,
              "reference": "A: the base build; A2: a copy of it (the harness's noise); B: this checkout",
              "slices": args.slices, "rounds": args.rounds, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
