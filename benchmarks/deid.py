"""De-identification speed and quality, with established PyPI tools side by side.

    python benchmarks/deid.py [--docs 350] [--dicom-repeats 200] [--rounds 5]
                              [--reference-python PY] [--text-baseline OLD_CHECKOUT]

Text: token-level recall/precision (megamed.data.deid.evaluate) and MB/s per core of
`find_phi` on the labelled synthetic corpus (megamed.data.deid.corpus), one document at a
time. Per core = bytes / CPU seconds of this process (time.process_time), so a busy shared
machine does not count other processes' time; wall-clock MB/s is printed beside it. Rates are
medians of --rounds timed rounds. --text-baseline times another checkout's find_phi on the same
corpus in the same run (a speed-up is a ratio measured under the same load).
DICOM: files per second ("headers") and MB/s per core of the file path that tools/deid.py
takes, the fast path (megamed.data.deid.dicom_fast, bytes to bytes) against the reference
(pydicom read, deidentify_dicom, save_as) on the same pydicom shipped files in the same run,
and the reference's parts (read without pixels, the rules, write).
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydicom  # noqa: E402

from megamed.data.deid import Pseudonymizer, deidentify_dicom, find_phi  # noqa: E402
from megamed.data.deid.dicom import read_dicom, write_dicom  # noqa: E402
from megamed.data.deid.dicom_fast import fast_deidentify  # noqa: E402
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


BASELINE = r'''
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from megamed.data.deid import find_phi
texts = [json.loads(line)["text"] for line in open(sys.argv[2])]
[find_phi(t) for t in texts]        # warm, as ours is after its first round (token caches)
cpus = []
for _ in range(int(sys.argv[3])):
    t0 = time.process_time()
    [find_phi(t) for t in texts]
    cpus.append(time.process_time() - t0)
print(statistics.median(cpus))
'''


def baseline_round(checkout: str, corpus_path: str) -> float | str:
    """CPU seconds of one find_phi pass of another checkout (e.g. the commit before a speed-up)
    over the corpus, in a fresh interpreter; or why it failed."""
    run = subprocess.run([sys.executable, "-c", BASELINE, checkout, corpus_path, "1"],
                         capture_output=True, text=True, timeout=900)
    return run.stderr.strip()[-200:] if run.returncode else float(run.stdout.strip())


def text_benchmark(docs: list[dict], rounds: int = 5, baseline: str | None = None,
                   corpus_path: str | None = None) -> dict:
    """MB/s per core of find_phi, median of `rounds`; with `baseline` (a checkout), a round of
    it after each of ours, so both see the same machine load."""
    texts = [d["text"] for d in docs]
    nbytes = sum(len(t.encode()) for t in texts)
    find_phi(texts[0])                                  # load the word lists first
    cpus, walls, base = [], [], []
    for _ in range(rounds):
        t0, w0 = time.process_time(), time.perf_counter()
        preds = [find_phi(t) for t in texts]
        cpus.append(time.process_time() - t0)
        walls.append(time.perf_counter() - w0)
        if baseline:
            base.append(baseline_round(baseline, corpus_path))
    result = evaluate.score([{"text": t, "spans": d["spans"]} for t, d in zip(texts, docs)],
                            detector=_cached(texts, preds))
    cpu, wall = statistics.median(cpus), statistics.median(walls)
    out = {}
    if baseline:
        failed = [b for b in base if isinstance(b, str)]
        out["baseline"] = {"checkout": baseline, "ran": False, "reason": failed[0]} if failed \
            else {"checkout": baseline, "ran": True, "interleaved_rounds": rounds,
                  "mb_per_s_per_core": nbytes / statistics.median(base) / 1e6}
    return {**out, "mb_per_s_per_core": nbytes / cpu / 1e6, "mb_per_s_wall": nbytes / wall / 1e6,
            "rounds": rounds,
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


def _median_rate(work, count: int, rounds: int) -> float:
    """Median over `rounds` of count / CPU seconds of work()."""
    rates = []
    for _ in range(rounds):
        t0 = time.process_time()
        work()
        rates.append(count / (time.process_time() - t0))
    return statistics.median(rates)


def dicom_benchmark(repeats: int, rounds: int = 5) -> dict:
    """Headers/s and MB/s per core, medians of `rounds`: the file path of tools/deid.py, fast
    (dicom_fast: bytes to bytes) against the reference (pydicom read, deidentify_dicom, write)
    on the same files in the same run; and the reference's parts (read, rules, write)."""
    folder = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "waveform_ecg.dcm", "JPEG2000.dcm"]
    names = [n for n in names if os.path.exists(os.path.join(folder, n))]
    raws = [open(os.path.join(folder, n), "rb").read() for n in names]
    nbytes = sum(len(r) for r in raws)
    ps = Pseudonymizer(b"benchmark-key-0123456789")
    options = {"allow_burned_in": True}
    taken = {n: fast_deidentify(r, ps, **options) is not None for n, r in zip(names, raws)}

    def reference_file(r):
        ds = read_dicom(io.BytesIO(r), "benchmark.dcm")
        return write_dicom(deidentify_dicom(ds, ps, in_place=True, **options), "benchmark.dcm")

    n_ref, n_fast = max(1, repeats // 10), max(1, repeats // 2)
    ref = _median_rate(lambda: [reference_file(r) for _ in range(n_ref) for r in raws],
                       n_ref * len(raws), rounds)
    fast = _median_rate(lambda: [fast_deidentify(r, ps, **options)
                                 for _ in range(n_fast) for r in raws], n_fast * len(raws), rounds)
    per_file = {n: {"reference": _median_rate(lambda: [reference_file(r) for _ in range(n_ref)],
                                              n_ref, rounds),
                    "fast": _median_rate(lambda: [fast_deidentify(r, ps, **options)
                                                  for _ in range(n_fast)], n_fast, rounds)}
                for n, r in zip(names, raws)}
    # the reference path's parts, headers only (no pixels)
    read = _median_rate(lambda: [pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True)
                                 for _ in range(n_ref) for r in raws], n_ref * len(raws), rounds)
    ready = [pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True)
             for _ in range(n_ref * rounds) for r in raws]
    it = iter(ready)
    rules = _median_rate(lambda: [deidentify_dicom(next(it), ps, in_place=True, **options)
                                  for _ in range(n_ref * len(raws))], n_ref * len(raws), rounds)
    done = ready[:n_ref * len(raws)]
    write = _median_rate(lambda: [ds.save_as(io.BytesIO(), enforce_file_format=False)
                                  for ds in done], len(done), rounds)
    del ready, done
    gc.collect()
    mb = nbytes / len(raws) / 1e6
    return {"files": names, "file_bytes": [len(r) for r in raws],
            "elements_per_header": [len(list(pydicom.dcmread(io.BytesIO(r)).iterall()))
                                    for r in raws],
            "fast_path_taken": taken, "rounds": rounds,
            "fast_headers_per_s_per_core": fast, "fast_mb_per_s_per_core": fast * mb,
            "reference_headers_per_s_per_core": ref, "reference_mb_per_s_per_core": ref * mb,
            "fast_over_reference": fast / ref, "per_file_headers_per_s": per_file,
            "reference_parts_headers_per_s_per_core": {
                "pydicom_read_no_pixels": read, "deidentify_read_dataset": rules,
                "pydicom_write": write}}


RESULTS = Path(__file__).parent / "results" / "deid.json"


def _carry_over(refs: dict, docs: int, seed: int) -> None:
    """A reference tool that is not installed in this run keeps its result from the previous
    run on the same corpus, marked as such (their numbers do not change with megamed's code)."""
    try:
        previous = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return
    if previous.get("corpus", {}).get("docs") != docs or previous["corpus"].get("seed") != seed:
        return
    for tool, result in refs.items():
        old = previous.get("references", {}).get(tool, {})
        if not result["ran"] and "ModuleNotFoundError" in str(result.get("reason")) and \
                old.get("ran"):
            refs[tool] = {**old, "carried_over": "from the previous run (not installed in this "
                          f"run: {result['reason']})"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=350)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dicom-repeats", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds; medians are reported")
    ap.add_argument("--text-baseline", metavar="CHECKOUT",
                    help="also time find_phi of this checkout (e.g. a worktree of an older "
                         "commit) on the same corpus, a round after each of ours")
    ap.add_argument("--reference-python", default=sys.executable,
                    help="interpreter that has the reference tools installed")
    args = ap.parse_args()
    docs = generate(args.docs, seed=args.seed)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for d in docs:
            f.write(json.dumps({"text": d["text"], "spans": d["spans"]}) + "\n")
    ours = text_benchmark(docs, args.rounds, args.text_baseline, f.name)
    refs = {tool: reference_benchmark(tool, args.reference_python, docs, f.name)
            for tool in ("presidio-patterns", "scrubadub", "philter-ucsf")}
    _carry_over(refs, args.docs, args.seed)
    os.unlink(f.name)   # (after the text baseline, which reads it)
    dicom = dicom_benchmark(args.dicom_repeats, args.rounds)
    print(ours["table"])
    print(f"\n| tool | recall | precision | MB/s per core | MB/s wall |\n|---|---|---|---|---|")
    print(f"| megamed find_phi | {ours['recall']:.4f} | {ours['precision']:.4f} | "
          f"{ours['mb_per_s_per_core']:.3f} | {ours['mb_per_s_wall']:.3f} |")
    for tool, r in refs.items():
        if r["ran"]:
            tool += " (previous run)" if "carried_over" in r else ""
            print(f"| {tool} | {r['recall']:.4f} | {r['precision']:.4f} | "
                  f"{r['mb_per_s_per_core']:.3f} | {r['mb_per_s_wall']:.3f} |")
        else:
            print(f"| {tool} | did not run: {r['reason']} | | | |")
    if "baseline" in ours and ours["baseline"]["ran"]:
        base = ours["baseline"]["mb_per_s_per_core"]
        print(f"text baseline {ours['baseline']['checkout']}: {base:.3f} MB/s per core; "
              f"this checkout {ours['mb_per_s_per_core'] / base:.2f}x")
    print("\n| DICOM file de-identification (read + rules + write), per core | headers/s | MB/s |"
          "\n|---|---|---|")
    for label, key in (("reference (pydicom read, deidentify_dicom, save_as)", "reference"),
                       ("fast path (dicom_fast)", "fast")):
        print(f"| {label} | {dicom[key + '_headers_per_s_per_core']:.0f} | "
              f"{dicom[key + '_mb_per_s_per_core']:.2f} |")
    print(f"fast / reference: {dicom['fast_over_reference']:.1f}x; fast path taken: "
          f"{dicom['fast_path_taken']}")
    print("reference parts, headers/s: " + ", ".join(
        f"{k} {v:.0f}" for k, v in dicom["reference_parts_headers_per_s_per_core"].items()))
    print("per file (reference / fast): " + ", ".join(
        f"{k} {v['reference']:.0f}/{v['fast']:.0f}" for k, v in
        dicom["per_file_headers_per_s"].items()))
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
           "versions": {"pydicom": pydicom.__version__},
           "corpus": {"docs": args.docs, "seed": args.seed, "bytes": ours["bytes"]},
           "text": {k: v for k, v in ours.items() if k != "table"}, "references": refs,
           "dicom": dicom}
    os.makedirs(RESULTS.parent, exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
