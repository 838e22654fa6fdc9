"""De-identify a folder of clinical text, DICOM and WFDB files into another folder.

Each output is written to a temporary name (`NAME.partial`) and renamed when complete, so an
output that exists is finished: a re-run skips it and redoes a half-written one. Outputs keep
their relative paths by default. File and folder names can carry PHI
("Smith_John_19510304.dcm"): with `rename_files=True` (`--pseudonymize-file-names`) every part
of a name that may (a first name, a common surname, a word that is not English, a run of 5 or
more digits) is replaced by a keyed token, the same in every run under the key (`safe_name`),
so WFDB pairs and study folders stay together and `.hea` headers name their record and signal
files by the new names; without it the report counts the names that may
(`names_that_may_identify`) and the tool says so. The heuristic also renames harmless names
(`rtplan.dcm`), which is why it is not the default. The report (`deid_report.json` in the
output folder) holds counts only (files, PHI categories, DICOM actions), the refused files (by
their output names) with the reason, and the key id; never a value from a file. An output folder made under another key is refused
rather than mixed. Symbolic links are not followed (reported as refused); an output folder
inside the input folder is left out of the input.
"""
from __future__ import annotations

import codecs
import collections
import json
import os
import re
import shutil
from pathlib import Path

from megamed.data.deid import lexicon
from megamed.data.deid.dicom import read_file_bytes
from megamed.data.deid.dicom_fast import deidentify_dicom_bytes
from megamed.data.deid.pseudonym import DeidError, Pseudonymizer
from megamed.data.deid.text import deidentify_text, deidentify_wfdb_header

REPORT = "deid_report.json"
TEXT_SUFFIXES = {".txt", ".text", ".note", ".md", ".rtf", ".csv", ".tsv"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
WAVEFORM_DATA_SUFFIXES = {".dat"}  # WFDB signal files: numbers only, copied beside their .hea
PARTIAL = ".partial"
# Text is de-identified in pieces of about this many characters, cut at a line end (else at a
# space): the detector's context is a few lines, its cost on hostile input grows faster than
# the length, and the progress bar moves inside a 50 MB file.
CHUNK_CHARS = 1 << 18


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
                      progress: bool = True, rename_files: bool = False,
                      **dicom_options) -> dict:
    """De-identify every file under `src` into the same relative path under `dst` (with
    `rename_files`, names made safe by `safe_name`)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DeidError(f"{src}: not a folder")
    _check_folders(src, dst)
    dst.mkdir(parents=True, exist_ok=True)
    previous = _read_report(dst)
    if previous and previous.get("key_id") != ps.key_id:
        raise DeidError(f"{dst}: made with key {previous.get('key_id')}, this key is "
                        f"{ps.key_id}; use a fresh output folder")
    report = {"key_id": ps.key_id, "files": collections.Counter(), "text_categories": {},
              "dicom_actions": {}, "refused": [], "names_that_may_identify": 0}
    files, links, hidden = _walk(src, dst)
    name = (lambda rel: safe_path(rel, ps)) if rename_files else (lambda rel: rel)
    if not rename_files:
        report["names_that_may_identify"] = sum(safe_path(rel, ps) != rel for rel in files)
    if hidden:
        report["files"]["skipped (hidden)"] += hidden
    for rel in links:
        out_rel = name(rel)
        _refuse(report, out_rel, f"{out_rel}: symbolic link, not followed (copy the file in "
                "if it belongs to the export)")
    bar = _progress(sum(_size(src / rel) for rel in files), progress)
    taken: dict[Path, Path] = {}
    try:
        for rel in files:
            _do_file(src, dst, rel, name(rel), ps, report, dicom_options, taken, bar,
                     rename_files)
    finally:                 # an interrupted run still leaves the counts of what it did
        bar.close()
        _merge_previous(report, previous)
        with open(dst / REPORT, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
    return report


def _do_file(src, dst, rel, out_rel, ps, report, options, taken, bar, rename_files) -> None:
    path = src / rel
    out = dst / out_rel
    try:
        if taken.setdefault(out_rel, rel) != rel:
            raise DeidError(f"{out_rel}: another input file got the same output name; "
                            "not written")
        if out.exists():
            report["files"]["skipped (already done)"] += 1
            return
        kind = kind_of(path)
        if kind is None:
            raise DeidError(f"{out_rel}: unknown file type (not text, DICOM or WFDB); "
                            "not copied")
        out.parent.mkdir(parents=True, exist_ok=True)
        _one(path, out, str(out_rel), kind, ps, report, options, bar, rename_files)
        report["files"][kind] += 1
    except DeidError as e:
        _refuse(report, out_rel, str(e))
    except Exception as e:   # a bug or a system error: refuse the file, keep going
        _refuse(report, out_rel, f"{out_rel}: failed ({type(e).__name__}); not written")
    finally:
        bar.update(max(0, _size(path) - getattr(bar, "file_done", 0)))
        bar.file_done = 0


def _refuse(report: dict, out_rel, reason: str) -> None:
    report["refused"].append({"file": str(out_rel), "reason": reason})
    report["files"]["refused"] += 1


def _one(path: Path, out: Path, name: str, kind: str, ps: Pseudonymizer, report: dict,
         options, bar, rename_files: bool) -> None:
    tmp = out.with_name(out.name + PARTIAL)
    try:
        if kind == "wfdb_data":
            shutil.copyfile(path, tmp)
        else:
            raw = read_file_bytes(path, name)
            if kind == "dicom":
                data = deidentify_dicom_bytes(raw, ps, name=name,
                                              counts=report["dicom_actions"], **options)
            else:
                text, encoding = decode_text(raw, name)
                if kind == "wfdb_header":
                    clean = deidentify_wfdb_header(
                        text, ps, name=name,
                        rename=(lambda n: safe_name(n, ps)) if rename_files else None,
                        counts=report["text_categories"])
                else:
                    clean = deidentify_long_text(text, ps, report["text_categories"], bar)
                data = codecs.encode(clean, encoding)
            with open(tmp, "wb") as f:
                f.write(data)
        os.replace(tmp, out)
    except OSError as e:
        raise DeidError(f"{name}: cannot write or copy ({e.strerror})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


# --- text ----------------------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(raw: bytes, name: str) -> tuple[str, str]:
    """(text, codec to write it back with): UTF-8, with or without a byte order mark, or
    UTF-16 with one. Line ends are kept as they are (CRLF stays CRLF). Anything else is
    refused: guessing latin-1 / cp1252 would turn binary junk into "text"."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise DeidError(f"{name}: not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text "
                        f"(invalid byte at offset {e.start}; latin-1 / cp1252? convert it "
                        "to UTF-8 first)") from None
    if "\0" in text:
        raise DeidError(f"{name}: binary content (NUL bytes; UTF-16 needs a byte order mark), "
                        "not text")
    return text, encoding


def deidentify_long_text(text: str, ps: Pseudonymizer, counts: dict, bar=None) -> str:
    """`deidentify_text` in pieces of about CHUNK_CHARS cut at line ends (at a space inside a
    longer line); a text shorter than that gives exactly `deidentify_text(text)`."""
    out = []
    for piece in _pieces(text, CHUNK_CHARS):
        out.append(deidentify_text(piece, ps, counts=counts))
        if bar is not None:
            done = len(piece.encode("utf-8", "surrogatepass"))
            bar.update(done)
            bar.file_done = getattr(bar, "file_done", 0) + done
    return "".join(out)


def _pieces(text: str, size: int):
    start = 0
    while len(text) - start > size:
        cut = text.rfind("\n", start + size // 2, start + size)
        if cut < 0:
            cut = text.rfind(" ", start + size // 2, start + size)
        end = start + size if cut < 0 else cut + 1
        yield text[start:end]
        start = end
    yield text[start:]


# --- names -----------------------------------------------------------------------------------

_NAME_PART = re.compile(r"[A-Za-z]+|[0-9]+")
_SAFE_WORDS = frozenset("dicom dcm wfdb hea dat img ecg ekg eeg mri pacs anon deid jpeg png "
                        "json jsonl txt csv tsv rtf md".split())


def safe_name(name: str, ps: Pseudonymizer) -> str:
    """`name` with each part that may identify someone replaced by a keyed token (the same
    part gives the same token under the key): first names, the 500 commonest surnames,
    letters that are not an English word, runs of 5 or more digits (dates, record numbers,
    UIDs). Separators, short numbers, words and file type suffixes stay."""
    return _NAME_PART.sub(lambda m: _safe_part(m.group(), ps), name)


def _safe_part(part: str, ps: Pseudonymizer) -> str:
    if _may_identify(part):
        return ps.token("file-name", part.lower(), 8)
    return part


def _may_identify(part: str) -> bool:
    if part.isdigit():
        return len(part) >= 5
    word = part.lower()
    if word in _SAFE_WORDS or word in lexicon.MEDICAL_WORDS or len(word) < 3:
        return False
    if word in lexicon.first_names():
        return True
    rank = lexicon.surname_rank().get(word)
    if rank is not None and rank <= 500:
        return True
    return word not in lexicon.english_words() and len(word) >= 4


def safe_path(rel: Path, ps: Pseudonymizer) -> Path:
    return Path(*(safe_name(part, ps) for part in rel.parts))


# --- walking ---------------------------------------------------------------------------------

def _check_folders(src: Path, dst: Path) -> None:
    s, d = src.resolve(), dst.resolve()
    if s == d:
        raise DeidError(f"{dst}: the output folder is the input folder")
    if d in s.parents:
        raise DeidError(f"{dst}: the output folder contains the input folder; choose "
                        "another output folder")


def _walk(src: Path, dst: Path) -> tuple[list[Path], list[Path], int]:
    """(regular files, symbolic links, hidden entries) under `src`, relative to it, sorted;
    the output folder (when it is inside `src`) and symbolic links are not entered."""
    files, links, hidden = [], [], 0
    skip = dst.resolve()
    for root, dirs, names in os.walk(src):
        root_path = Path(root)
        for d in list(dirs):
            full = root_path / d
            if d.startswith(".") or full.resolve() == skip or full.is_symlink():
                dirs.remove(d)
                if full.is_symlink():
                    links.append(full.relative_to(src))
                elif d.startswith("."):
                    hidden += 1
        for n in names:
            full = root_path / n
            if full.is_symlink():
                links.append(full.relative_to(src))
            elif n.startswith("."):
                hidden += 1
            elif full.is_file():
                files.append(full.relative_to(src))
    return sorted(files), sorted(links), hidden


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
            if key == "files" and k in ("skipped (already done)", "refused",
                                        "skipped (hidden)"):
                continue
            report[key][k] = report[key].get(k, 0) + v


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total_bytes: int, enabled: bool):
    """A byte-counting bar on stderr (it moves inside a large text file); no file names,
    which can carry PHI."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="de-identifying",
                mininterval=1.0)
