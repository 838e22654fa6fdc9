"""De-identification speed and quality, with established PyPI tools side by side.

    python benchmarks/deid.py [--docs 350] [--dicom-repeats 200] [--reference-python PY]

Text: token-level recall/precision (megamed.data.deid.evaluate) and MB/s per core of
`find_phi` on the labelled synthetic corpus (megamed.data.deid.corpus), one document at a
time. Per core = bytes / CPU seconds of this process (time.process_time), so a busy shared
machine does not count other processes' time; wall-clock MB/s is printed beside it.
DICOM: headers per second per core of `deidentify_dicom` on pydicom's shipped files (parsed
once, de-identified many times) and of read + de-identify (pydicom.dcmread, no pixels).
References run on the same corpus in a separate interpreter (`--reference-python`, default:
this one) so their heavy dependencies stay out of megamed's environment: presidio-analyzer's
pattern recognizers (no spaCy model: none can be downloaded here), scrubadub's default
detectors, philter-ucsf. Each that cannot run is reported with the reason.
Writes benchmarks/results/deid.json.
"""
from __future__ import annotations

import argparse
import gc
import glob
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydicom  # noqa: E402

from megamed.data.deid import DeidError, Pseudonymizer, deidentify_dicom, find_phi  # noqa: E402
from megamed.data.deid import evaluate  # noqa: E402
from megamed.data.deid.corpus import generate  # noqa: E402

REFERENCE = r'''
import json, sys, time
tool, path = sys.argv[1], sys.argv[2]
docs = [json.loads(line)["text"] for line in open(path)]
try:
    if tool == "presidio-patterns":
        from presidio_analyzer.predefined_recognizers import (EmailRecognizer, PhoneRecognizer,
            DateRecognizer, IpRecognizer, UrlRecognizer, UsSsnRecognizer, UsLicenseRecognizer,
            UsPassportRecognizer, UsBankRecognizer, MedicalLicenseRecognizer)
        recs = [EmailRecognizer(), PhoneRecognizer(), DateRecognizer(), IpRecognizer(),
                UrlRecognizer(), UsSsnRecognizer(), UsLicenseRecognizer(), UsPassportRecognizer(),
                UsBankRecognizer(), MedicalLicenseRecognizer()]
        def detect(text):
            out = []
            for r in recs:
                for x in r.analyze(text, r.supported_entities, None) or []:
                    out.append((x.start, x.end, x.entity_type))
            return out
    elif tool == "scrubadub":
        import scrubadub
        scrubber = scrubadub.Scrubber()
        def detect(text):
            return [(f.beg, f.end, f.type) for f in scrubber.iter_filth(text)]
    elif tool == "philter-ucsf":
        from philter_ucsf.philter import Philter  # noqa: F401  (needs chardet, undeclared)
        import nltk
        nltk.pos_tag(["probe"])   # Philter tags every note; the tagger's data is a download
        raise RuntimeError("philter-ucsf imports, but runs only folder-to-folder with i2b2 "
                           "configs; not wired here")
    else:
        raise RuntimeError("unknown tool")
    detect(docs[0])
    t0, w0 = time.process_time(), time.perf_counter()
    preds = [detect(d) for d in docs]
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    print(json.dumps({"ok": True, "cpu_s": cpu, "wall_s": wall, "spans": preds}))
except Exception as e:
    words = " ".join(str(e).replace("*", "").split())
    print(json.dumps({"ok": False, "reason": f"{type(e).__name__}: {words[:110]}"}))
'''


def text_benchmark(docs: list[dict]) -> dict:
    texts = [d["text"] for d in docs]
    nbytes = sum(len(t.encode()) for t in texts)
    find_phi(texts[0])                                  # load the word lists first
    best = None
    for _ in range(3):
        t0, w0 = time.process_time(), time.perf_counter()
        preds = [find_phi(t) for t in texts]
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        best = min(best or (cpu, wall), (cpu, wall))
    result = evaluate.score([{"text": t, "spans": d["spans"]} for t, d in zip(texts, docs)],
                            detector=_cached(texts, preds))
    return {"mb_per_s_per_core": nbytes / best[0] / 1e6, "mb_per_s_wall": nbytes / best[1] / 1e6,
            "bytes": nbytes, "recall": result["overall"]["recall"],
            "precision": result["overall"]["precision"], "table": evaluate.table(result)}


def _cached(texts, preds):
    table = dict(zip(texts, preds))
    return lambda text: table[text]


def reference_benchmark(tool: str, python: str, docs: list[dict], corpus_path: str) -> dict:
    try:
        run = subprocess.run([python, "-c", REFERENCE, tool, corpus_path], capture_output=True,
                             text=True, timeout=900)
        out = json.loads(run.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as e:
        return {"ran": False, "reason": f"{type(e).__name__}"}
    if not out.get("ok"):
        return {"ran": False, "reason": out.get("reason")}
    texts = [d["text"] for d in docs]
    nbytes = sum(len(t.encode()) for t in texts)
    preds = [[tuple(s) for s in p] for p in out["spans"]]
    result = evaluate.score(docs, detector=_cached(texts, preds))
    return {"ran": True, "recall": result["overall"]["recall"],
            "precision": result["overall"]["precision"],
            "mb_per_s_per_core": nbytes / out["cpu_s"] / 1e6,
            "mb_per_s_wall": nbytes / out["wall_s"] / 1e6,
            "per_category_recall": {c: m["recall"] for c, m in result["per_category"].items()}}


def dicom_benchmark(repeats: int) -> dict:
    folder = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "waveform_ecg.dcm", "JPEG2000.dcm"]
    raws = [open(os.path.join(folder, n), "rb").read() for n in names
            if os.path.exists(os.path.join(folder, n))]
    ps = Pseudonymizer(b"benchmark-key-0123456789")
    parsed = [pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True) for r in raws]
    copies = [pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True)
              for _ in range(repeats) for r in raws]
    for ds in copies:                                   # decode once: measure the rules only
        list(ds.iterall())
    t0 = time.process_time()
    for ds in copies:
        try:
            deidentify_dicom(ds, ps, allow_burned_in=True, in_place=True)
        except DeidError:
            pass
    rules = len(copies) / (time.process_time() - t0)
    del copies          # 1,000 live datasets make every later garbage collection slower
    gc.collect()
    n = max(1, repeats // 4)
    t0 = time.process_time()
    for _ in range(n):
        for r in raws:
            deidentify_dicom(pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True), ps, in_place=True,
                             allow_burned_in=True)
    full = n * len(raws) / (time.process_time() - t0)
    t0 = time.process_time()
    for _ in range(n):
        for r in raws:
            pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True)
    read = n * len(raws) / (time.process_time() - t0)
    # the header work proper: de-identify an already-read dataset, then write it
    ready = [pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True) for _ in range(n) for r in raws]
    done = []
    t0 = time.process_time()
    for ds in ready:
        done.append(deidentify_dicom(ds, ps, in_place=True, allow_burned_in=True))
    deid_only = len(ready) / (time.process_time() - t0)
    t0 = time.process_time()
    for ds in done:
        ds.save_as(io.BytesIO(), enforce_file_format=False)
    write = len(done) / (time.process_time() - t0)
    deid_write = 1 / (1 / deid_only + 1 / write)
    per_file = {}
    for name, r in zip(names, raws):           # read + de-identify, file by file
        n = max(1, repeats // 4)
        t0 = time.process_time()
        for _ in range(n):
            deidentify_dicom(pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True), ps, in_place=True,
                             allow_burned_in=True)
        per_file[name] = n / (time.process_time() - t0)
    return {"files": names, "elements_per_header": [len(list(d.iterall())) for d in parsed],
            "read_and_deid_per_file": per_file,
            "deid_headers_per_s_per_core": rules, "read_and_deid_headers_per_s_per_core": full,
            "pydicom_read_only_headers_per_s_per_core": read,
            "deid_of_read_dataset_headers_per_s_per_core": deid_only,
            "write_headers_per_s_per_core": write,
            "deid_plus_write_headers_per_s_per_core": deid_write}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=350)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dicom-repeats", type=int, default=200)
    ap.add_argument("--reference-python", default=sys.executable,
                    help="interpreter that has the reference tools installed")
    args = ap.parse_args()
    docs = generate(args.docs, seed=args.seed)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for d in docs:
            f.write(json.dumps({"text": d["text"], "spans": d["spans"]}) + "\n")
    ours = text_benchmark(docs)
    refs = {tool: reference_benchmark(tool, args.reference_python, docs, f.name)
            for tool in ("presidio-patterns", "scrubadub", "philter-ucsf")}
    os.unlink(f.name)
    dicom = dicom_benchmark(args.dicom_repeats)
    print(ours["table"])
    print(f"\n| tool | recall | precision | MB/s per core | MB/s wall |\n|---|---|---|---|---|")
    print(f"| megamed find_phi | {ours['recall']:.4f} | {ours['precision']:.4f} | "
          f"{ours['mb_per_s_per_core']:.3f} | {ours['mb_per_s_wall']:.3f} |")
    for tool, r in refs.items():
        if r["ran"]:
            print(f"| {tool} | {r['recall']:.4f} | {r['precision']:.4f} | "
                  f"{r['mb_per_s_per_core']:.3f} | {r['mb_per_s_wall']:.3f} |")
        else:
            print(f"| {tool} | did not run: {r['reason']} | | | |")
    print("\n| DICOM headers/s per core (no pixels) | rate |\n|---|---|")
    for label, key in (("read (pydicom.dcmread)", "pydicom_read_only_headers_per_s_per_core"),
                       ("de-identify a read dataset (first decode included)",
                        "deid_of_read_dataset_headers_per_s_per_core"),
                       ("write (save_as to memory)", "write_headers_per_s_per_core"),
                       ("de-identify + write (the header work)",
                        "deid_plus_write_headers_per_s_per_core"),
                       ("read + de-identify", "read_and_deid_headers_per_s_per_core"),
                       ("de-identify, values decoded beforehand", "deid_headers_per_s_per_core")):
        print(f"| {label} | {dicom[key]:.0f} |")
    print("read + de-identify per file: " + ", ".join(
        f"{k} {v:.0f}/s" for k, v in dicom["read_and_deid_per_file"].items()))
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
           "versions": {"pydicom": pydicom.__version__},
           "corpus": {"docs": args.docs, "seed": args.seed, "bytes": ours["bytes"]},
           "text": {k: v for k, v in ours.items() if k != "table"}, "references": refs,
           "dicom": dicom}
    os.makedirs(Path(__file__).parent / "results", exist_ok=True)
    with open(Path(__file__).parent / "results" / "deid.json", "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
