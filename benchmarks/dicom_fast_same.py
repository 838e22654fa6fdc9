"""The DICOM fast path's output bytes and action counts, file by file, against those of another
checkout (e.g. main before a speed-up): every file under pydicom's data/test_files and
pydicom-data's store, under the option sets of tests/data/test_deid_dicom_fast.py.

    # once, with the other checkout's code (read only):
    python benchmarks/dicom_fast_same.py --checkout /work/main --store /tmp/main_fast.json
    # after every change, with this checkout's code:
    python benchmarks/dicom_fast_same.py --compare /tmp/main_fast.json

Prints the files whose output (sha256 of the bytes, or "declined" where the fast path gave
the file to the reference path) or counts differ; exit status 1 if any do. `--mutations N`
adds N damaged copies of the shipped files under 64 KiB (bytes changed, cut out or truncated,
from a fixed seed): malformed input must be declined or written exactly as before too.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import sys
from pathlib import Path

KEY = b"test-key-0123456789abcdef"
OPTIONS = [{"allow_burned_in": True}, {},
           {"allow_burned_in": True, "retain_dates": False,
            "retain_patient_characteristics": True}]


def shipped_files() -> list[str]:
    import pydicom
    roots = [os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")]
    try:
        import data_store                          # pydicom-data
        roots.append(os.path.join(os.path.dirname(data_store.__file__), "data"))
    except ImportError:
        pass
    return sorted(p for root in roots for p in glob.glob(os.path.join(root, "**", "*"),
                                                          recursive=True) if os.path.isfile(p))


def mutated(files: list[str], count: int) -> list[tuple[str, bytes]]:
    """`count` damaged copies of the small files, the same for every run."""
    rng = random.Random(11)
    small = [p for p in files if os.path.getsize(p) < 1 << 16]
    out = []
    for i in range(count):
        path = rng.choice(small)
        raw = bytearray(open(path, "rb").read())
        for _ in range(rng.choice([1, 1, 2, 3])):
            at, kind = rng.randrange(132, len(raw)), rng.random()
            if kind < 0.5:
                raw[at] = rng.randrange(256)
            elif kind < 0.7:         # tags, VRs and lengths the parser branches on
                raw[at:at + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"SQ", b"UN", b"\xfe\xff",
                                             b"\x0d\xe0", b"\xdd\xe0", b"\x00\xe0"])
            elif kind < 0.85:
                del raw[at:at + rng.randrange(1, 16)]
            else:
                del raw[at:]
        out.append((f"{'/'.join(Path(path).parts[-2:])} mutation {i}", bytes(raw)))
    return out


def outputs(checkout: str, mutations: int = 0) -> dict:
    sys.path.insert(0, checkout)
    from megamed.data.deid import Pseudonymizer
    from megamed.data.deid.dicom_fast import fast_deidentify
    print(f"fast path from {sys.modules['megamed.data.deid.dicom_fast'].__file__}",
          file=sys.stderr)
    ps = Pseudonymizer(KEY)
    files = shipped_files()
    inputs = [("/".join(Path(p).parts[-3:]), open(p, "rb").read()) for p in files]
    inputs += mutated(files, mutations)
    result = {}
    # twice, the second time backwards: what the caches hold from other files (and options)
    # must not change an output
    for name, raw in inputs + inputs[::-1]:
        for i, options in enumerate(OPTIONS):
            counts: dict = {}
            out = fast_deidentify(raw, ps, counts=counts, **options)
            got = ["declined" if out is None else hashlib.sha256(out).hexdigest(), counts]
            if result.setdefault(f"{name} #{i}", got) != got:
                result[f"{name} #{i}"] = ["depends on the files before it", counts]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", default=str(Path(__file__).resolve().parents[1]),
                    help="the checkout whose megamed is used (default: this one)")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--store", help="write the outputs' digests and counts to this JSON")
    what.add_argument("--compare", help="compare with the digests and counts in this JSON")
    ap.add_argument("--mutations", type=int, default=0,
                    help="also this many damaged copies of the small shipped files")
    args = ap.parse_args()
    got = outputs(args.checkout, args.mutations)
    if args.store:
        Path(args.store).write_text(json.dumps(got, indent=0, sort_keys=True))
        taken = sum(v[0] != "declined" for v in got.values())
        print(f"stored {len(got)} (file, options) outputs, {taken} by the fast path")
        return 0
    expected = json.loads(Path(args.compare).read_text())
    differ = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    for k in differ:
        print(f"DIFFERS {k}: expected {expected.get(k)}, got {got.get(k)}")
    taken = sum(v[0] != "declined" for v in got.values())
    print(f"{len(got) - len(differ)} of {len(got)} (file, options) outputs identical "
          f"({taken} by the fast path)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
