"""De-identify a folder of clinical text, DICOM and WFDB files into another folder.

Each output is written to a temporary name and renamed when complete, so an output that
exists is finished: a re-run skips it. The report (`deid_report.json` in the output folder)
holds counts only (files, PHI categories, DICOM actions), the refused files with the reason,
and the key id; never a value from a file. An output folder made under another key is refused
rather than mixed.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

from megamed.data.deid.dicom_fast import deidentify_dicom_file
from megamed.data.deid.pseudonym import DeidError, Pseudonymizer
from megamed.data.deid.text import deidentify_text, deidentify_wfdb_header

REPORT = "deid_report.json"
TEXT_SUFFIXES = {".txt", ".text", ".note", ".md", ".rtf", ".csv", ".tsv"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
WAVEFORM_DATA_SUFFIXES = {".dat"}  # WFDB signal files: numbers only, copied beside their .hea


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix == ".hea":
        return "wfdb_header"
    if suffix in WAVEFORM_DATA_SUFFIXES and path.with_suffix(".hea").exists():
        return "wfdb_data"
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        if head[128:132] == b"DICM":
            return "dicom"
    except OSError:
        pass
    return None


def deidentify_folder(src: str | os.PathLike, dst: str | os.PathLike, ps: Pseudonymizer, *,
                      progress: bool = True, **dicom_options) -> dict:
    """De-identify every file under `src` into the same relative path under `dst`."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DeidError(f"{src}: not a folder")
    dst.mkdir(parents=True, exist_ok=True)
    previous = _read_report(dst)
    if previous and previous.get("key_id") != ps.key_id:
        raise DeidError(f"{dst}: made with key {previous.get('key_id')}, this key is "
                        f"{ps.key_id}; use a fresh output folder")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    report = {"key_id": ps.key_id, "files": collections.Counter(), "text_categories": {},
              "dicom_actions": {}, "refused": []}
    for path in _progress(files, progress):
        rel = path.relative_to(src)
        out = dst / rel
        if out.exists():
            report["files"]["skipped (already done)"] += 1
            continue
        kind = kind_of(path)
        try:
            if kind is None:
                raise DeidError(f"{rel}: unknown file type (not text, DICOM or WFDB); not copied")
            out.parent.mkdir(parents=True, exist_ok=True)
            _one(path, out, kind, ps, report, dicom_options)
            report["files"][kind] += 1
        except DeidError as e:
            report["refused"].append({"file": str(rel), "reason": str(e).replace(str(src), "")
                                      .lstrip("/")})
            report["files"]["refused"] += 1
    _merge_previous(report, previous)
    with open(dst / REPORT, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    return report


def _one(path: Path, out: Path, kind: str, ps: Pseudonymizer, report: dict, options) -> None:
    tmp = out.with_name(out.name + ".partial")
    if kind == "dicom":
        deidentify_dicom_file(path, tmp, ps, counts=report["dicom_actions"], **options)
    elif kind == "wfdb_data":
        shutil.copyfile(path, tmp)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as e:
            raise DeidError(f"{path}: cannot read as UTF-8 text ({type(e).__name__})") from None
        if kind == "wfdb_header":
            clean = deidentify_wfdb_header(text, ps, counts=report["text_categories"])
        else:
            clean = deidentify_text(text, ps, counts=report["text_categories"])
        tmp.write_text(clean, encoding="utf-8")
    os.replace(tmp, out)


def _read_report(dst: Path) -> dict | None:
    try:
        with open(dst / REPORT) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _merge_previous(report: dict, previous: dict | None) -> None:
    """Counts of earlier runs stay in the report, so it always describes the whole folder."""
    report["files"] = dict(report["files"])
    if not previous:
        return
    # refused files were tried again in this run, so their earlier entries are not kept
    for key in ("files", "text_categories", "dicom_actions"):
        for k, v in previous.get(key, {}).items():
            if key == "files" and k in ("skipped (already done)", "refused"):
                continue
            report[key][k] = report[key].get(k, 0) + v


def _progress(files, enabled: bool):
    if not enabled:
        return files
    from tqdm import tqdm
    return tqdm(files, unit="file", desc="de-identifying")
