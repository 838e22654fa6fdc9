"""DICOM header de-identification: PS3.15 Annex E Basic Application Level Confidentiality
Profile, action by action, with the options Retain Longitudinal Temporal Information with
Modified Dates (default on), Clean Descriptors and Retain Patient Characteristics (off).

Conditional actions take the branch that keeps the IOD valid without keeping PHI: Z/D and
X/Z(/D) -> Z (zero-length, so Type 2 attributes stay present), X/D -> X, X/Z/U* -> keep the
sequence and remap the UIDs inside it. Dates (DA, and the date part of DT) are shifted by one
non-zero per-patient number of days from the key wherever they are kept, so intervals survive
in every file of a patient. Pixel data and waveform data are never touched.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import io
import logging
import os
import re
import struct
import warnings
from typing import Iterable

import pydicom
import pydicom.errors
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.datadict import dictionary_VR
from pydicom.uid import UID_dictionary

from megamed.data.deid.annex_e import ACTIONS as _TABLE, MASKED
from megamed.data.deid.pseudonym import DeidError, Pseudonymizer
from megamed.data.deid.text import deidentify_text

# Modalities whose pixels often carry burned-in text (PS3.15 E.1.1 / the list).
BURNED_IN_MODALITIES = ("US", "SC", "XC", "OT")
# Free-text descriptors that the Clean Descriptors option keeps after cleaning (C in E.1-1).
CLEAN_DESCRIPTORS = frozenset([
    0x00081030, 0x0008103E, 0x00204000, 0x001021B0, 0x00081080, 0x00104000, 0x00400254,
    0x00181030, 0x00321060, 0x00321030, 0x00324000, 0x00082111, 0x00184000, 0x00402400,
    0x00401400, 0x0040A160, 0x00400280, 0x00384000, 0x00181400, 0x00180010, 0x00209158,
    0x00401002, 0x00380062, 0x00380040, 0x00400007, 0x00081040, 0x00102180, 0x00400602,
    0x00400275, 0x00321066, 0x00321067,
])
# Retain Patient Characteristics: sex, age, size, weight, ethnic group, smoking, pregnancy.
PATIENT_CHARACTERISTICS = frozenset([
    0x00100040, 0x00101010, 0x00101020, 0x00101030, 0x00102160, 0x001021A0, 0x001021C0,
    0x00102203, 0x00101022, 0x00101023, 0x00101024,
])
# Where the transcription we generate from is less strict than E.1-1 today: free text of
# Structured Reports is removed (X) unless Clean Descriptors keeps it cleaned.
ACTIONS = {**_TABLE, 0x0040A730: "X", 0x0040A160: "X"}
_CONTENT_SEQUENCE = 0x0040A730
_KEEP_UIDS = frozenset([0x00020010, 0x00020012, 0x00080016, 0x00021510])
_CODES = {  # PS3.16 CID 7050 De-identification Method
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "clean": ("113105", "Clean Descriptors Option"),
    "patient": ("113108", "Retain Patient Characteristics Option"),
}
_DUMMY = {"PN": "ANONYMOUS", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "CS": "ANONYMIZED",
          "LT": "ANONYMIZED", "ST": "ANONYMIZED", "UT": "ANONYMIZED", "AE": "ANONYMIZED",
          "UC": "ANONYMIZED", "UR": "", "AS": "000Y", "DA": "19000101", "TM": "000000.00",
          "DT": "19000101", "IS": "0", "DS": "0"}
_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}


def _file_name(ds: Dataset) -> str:
    name = getattr(ds, "filename", None)
    return os.fspath(name) if isinstance(name, (str, os.PathLike)) else "<dataset in memory>"


def check_burned_in(ds: Dataset, allow_burned_in: bool = False) -> None:
    """DeidError when the pixels may hold burned-in PHI that header rules cannot remove."""
    if allow_burned_in:
        return
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if flag == "YES":
        raise DeidError(f"{_file_name(ds)}: Burned In Annotation is YES: text in the pixels may "
                        "identify the patient; refused (pass allow_burned_in=True after a "
                        "pixel scrub)")
    if "BurnedInAnnotation" not in ds and modality in BURNED_IN_MODALITIES:
        raise DeidError(f"{_file_name(ds)}: modality {modality} often carries burned-in text and "
                        "Burned In Annotation (0028,0301) is absent; refused (pass "
                        "allow_burned_in=True after checking the pixels)")


def deidentify_dicom(ds: Dataset, pseudonymizer: Pseudonymizer, *, allow_burned_in: bool = False,
                     retain_dates: bool = True, clean_descriptors: bool = False,
                     retain_patient_characteristics: bool = False, in_place: bool = False,
                     counts: dict | None = None) -> Dataset:
    """A de-identified copy of `ds` (file meta updated to match); `ds` itself is unchanged
    unless in_place=True (faster: no copy of the element table).

    retain_dates: shift dates by the patient's keyed offset (Retain Longitudinal Temporal
        Information with Modified Dates); False removes them by the basic profile.
    clean_descriptors: keep free-text descriptors after the text de-identifier.
    retain_patient_characteristics: keep sex, age, size, weight (option 113108).
    counts: if given, incremented per action ("D", "Z", "X", "U", "C", "shift", "private").
    """
    if not isinstance(ds, Dataset):
        raise DeidError(f"deidentify_dicom needs a pydicom Dataset, got {type(ds).__name__}")
    with quiet_pydicom():
        try:
            check_burned_in(ds, allow_burned_in)
            if not in_place:
                ds = _copy(ds)
            patient = str(ds.get("PatientID", "") or "").strip() or \
                str(ds.get("PatientName", "") or "").strip() or \
                str(ds.get("StudyInstanceUID", ""))
            ctx = _Context(pseudonymizer, patient, retain_dates, clean_descriptors,
                           retain_patient_characteristics, counts if counts is not None else {})
            if clean_descriptors:
                ctx.identity = _identity_pattern(ds)
            _count(ctx, "private", _remove_private(ds))
            _apply(ds, ctx)
            ds.PatientName = pseudonymizer.patient_name(patient)
            ds.PatientID = pseudonymizer.patient_id(patient)
            _record_method(ds, ctx)
            _update_file_meta(ds)
        except DeidError:
            raise
        except Exception as e:  # a malformed element: name the file, never the value
            raise DeidError(f"{_file_name(ds)}: cannot de-identify ({type(e).__name__} in the "
                            "header)") from None
    return ds


def _copy(ds: Dataset) -> Dataset:
    """A copy whose element table, sequences and file meta are its own. Undecoded elements
    (immutable) and values such as pixel bytes are shared, not copied: copy.deepcopy would
    cost more than the de-identification itself."""
    out = copy.copy(ds)
    table = {}
    for key, elem in ds._dict.items():
        if isinstance(elem, DataElement):
            if elem.VR == "SQ" and elem.value is not None:
                elem = DataElement(elem.tag, "SQ", Sequence([_copy(item) for item in elem.value]))
            else:
                elem = copy.copy(elem)
        table[key] = elem
    out._dict = table
    out._private_blocks = {}
    if getattr(ds, "file_meta", None) is not None:
        out.file_meta = copy.deepcopy(ds.file_meta)
    return out


class _Context:
    def __init__(self, ps, patient, retain_dates, clean, retain_patient, counts):
        self.ps = ps
        self.patient = patient
        self.shift = dt.timedelta(days=ps.date_shift_days(patient))
        self.retain_dates = retain_dates
        self.clean = clean
        self.retain_patient = retain_patient
        self.counts = counts
        self.identity = None       # the patient's own names and ids (Clean Descriptors)


def _count(ctx: _Context, action: str, n: int = 1) -> None:
    if n:
        ctx.counts[action] = ctx.counts.get(action, 0) + n


@functools.lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _remove_private(ds: Dataset) -> int:
    n = 0
    table = ds._dict
    for tag in list(table):
        if tag & 0x10000:                    # odd group: private (BaseTag is an int)
            del ds[tag]
            n += 1
        elif (table[tag].VR or _dictionary_vr(tag)) == "SQ":
            for item in ds[tag].value or ():
                n += _remove_private(item)
    return n


def _action_for(tag: int) -> str | None:
    action = ACTIONS.get(tag)
    if action is not None or (tag >> 24) not in (0x50, 0x60):   # masks: curves, overlays
        return action
    group, element = tag >> 16, tag & 0xFFFF
    for g, e, gmask, emask, masked_action in MASKED:
        if group & gmask == g and element & emask == e:
            return masked_action
    return None


_TOUCHED_VRS = frozenset(["SQ", "UI", "DA", "DT"])


def _apply(ds: Dataset, ctx: _Context) -> None:
    table = ds._dict
    for key in list(table):
        tag = int(key)
        if tag in (0x7FE00010, 0x54001010):  # pixel and waveform data: never touched
            continue
        action = ACTIONS.get(tag)
        if action is None and (tag >> 24) in (0x50, 0x60):
            action = _action_for(tag)
        vr = table[key].VR or _dictionary_vr(tag)
        # fast paths that never decode the value: kept as they are, or removed
        if action is None and vr not in _TOUCHED_VRS and not (
                ctx.clean and tag in CLEAN_DESCRIPTORS):
            continue
        if (action == "X" or (action == "X/D" and vr not in ("DA", "DT"))) and not (
                (ctx.clean and tag in CLEAN_DESCRIPTORS) or
                (ctx.retain_patient and tag in PATIENT_CHARACTERISTICS) or
                (ctx.clean and tag == _CONTENT_SEQUENCE)):
            del ds[key]
            _count(ctx, "X")
            continue
        elem = ds[key]
        if ctx.clean and tag in CLEAN_DESCRIPTORS and elem.VR != "SQ":
            _clean(ds, elem, ctx)
        elif ctx.clean and tag == _CONTENT_SEQUENCE:
            for item in elem.value or ():
                _apply(item, ctx)
        elif ctx.retain_patient and tag in PATIENT_CHARACTERISTICS:
            _count(ctx, "K")
        elif action is None:
            _keep(elem, ctx)
        else:
            _do(ds, elem, action, ctx)


def _keep(elem: DataElement, ctx: _Context) -> None:
    """Attributes the profile does not list: kept, with UIDs remapped and dates shifted."""
    if elem.VR == "SQ":
        for item in elem.value or ():
            _apply(item, ctx)
    elif elem.VR == "UI":
        _remap_uids(elem, ctx)
    elif elem.VR in ("DA", "DT"):
        _shift_or_remove(None, elem, ctx, removed="Z")


def _do(ds: Dataset, elem: DataElement, action: str, ctx: _Context) -> None:
    tag = int(elem.tag)
    if action == "U" or (action == "D" and elem.VR == "UI"):
        _remap_uids(elem, ctx)
        return
    if action == "X/Z/U*":
        for item in elem.value or ():
            _apply(item, ctx)
        _count(ctx, "U")
        return
    # the birth date is not a longitudinal date: Z, as the profile says
    if elem.VR in ("DA", "DT") and action != "X" and tag != 0x00100030:
        _shift_or_remove(ds, elem, ctx, removed="X" if action.startswith("X") else "Z")
        return
    if action in ("X", "X/D"):
        del ds[elem.tag]
        _count(ctx, "X")
    elif action in ("Z", "Z/D", "X/Z", "X/Z/D"):
        elem.value = Sequence() if elem.VR == "SQ" else None if elem.VR not in _TEXT_VRS else ""
        _count(ctx, "Z")
    elif action == "D":
        if elem.VR == "SQ":
            for item in elem.value or ():
                _apply(item, ctx)
        else:
            elem.value = _dummy(elem)
        _count(ctx, "D")
    else:  # an action this code does not know: remove rather than keep PHI
        del ds[elem.tag]
        _count(ctx, "X")


_TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())


def _dummy(elem: DataElement):
    if elem.VR in _DUMMY:
        return _DUMMY[elem.VR]
    if elem.VR in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        return 0
    if elem.VR in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    return None


def _remap_uids(elem: DataElement, ctx: _Context) -> None:
    if int(elem.tag) in _KEEP_UIDS or elem.value in (None, ""):
        return
    values = elem.value if elem.VM > 1 else [elem.value]
    out = [v if str(v) in UID_dictionary else ctx.ps.uid(str(v)) for v in values]
    elem.value = out if elem.VM > 1 else out[0]
    _count(ctx, "U")


def _shift_or_remove(ds: Dataset | None, elem: DataElement, ctx: _Context, removed: str) -> None:
    if not ctx.retain_dates:
        if ds is None or removed == "Z":
            elem.value = ""
            _count(ctx, "Z")
        else:
            del ds[elem.tag]
            _count(ctx, "X")
        return
    values = elem.value if elem.VM > 1 else [elem.value]
    shifted = [_shift_one(str(v), elem.VR, ctx.shift) for v in values if v not in (None, "")]
    elem.value = "\\".join(s for s in shifted if s) if shifted else elem.value
    _count(ctx, "shift")


@functools.lru_cache(maxsize=4096)   # a study's few dates repeat in every file
def _shift_one(value: str, vr: str, shift: dt.timedelta) -> str:
    """YYYYMMDD shifted; a DT keeps only its shifted date (its time of day could identify);
    a partial date (YYYY, YYYYMM) moves from the first day of its period and keeps its
    precision; a range ("A-B", either end may be open) moves both ends; a value that is not a
    date becomes empty."""
    value = value.strip()
    if vr == "DA" and value.count("-") == 1:
        first, last = value.split("-")
        ends = [_shift_one(v, vr, shift) if v else "" for v in (first, last)]
        return "-".join(ends) if all(e or not v for e, v in zip(ends, (first, last))) else ""
    digits = value[:8]
    full = digits
    if len(digits) in (4, 6) and digits.isdigit() and (vr == "DT" or value == digits):
        full = digits + "0101"[len(digits) - 4:]
    try:
        day = dt.datetime.strptime(full, "%Y%m%d").date()
    except ValueError:
        return ""
    return (day + shift).strftime("%Y%m%d")[:len(digits)]


def _clean(ds: Dataset, elem: DataElement, ctx: _Context) -> None:
    if elem.value in (None, ""):
        return
    values = elem.value if elem.VM > 1 else [elem.value]
    dates = "shift" if ctx.retain_dates else "year"
    cleaned = [deidentify_text(str(v), ctx.ps, dates=dates, patient=ctx.patient) for v in values]
    if ctx.identity is not None:   # "DOE^JANE", "PAT-123": forms the text detector can miss
        cleaned = [ctx.identity.sub("ANON", c) for c in cleaned]
    limit = _MAX_LEN.get(elem.VR)
    cleaned = [c[:limit] if limit else c for c in cleaned]
    elem.value = cleaned if elem.VM > 1 else cleaned[0]
    _count(ctx, "C")


_IDENTITY_TAGS = ("PatientName", "PatientID", "OtherPatientNames", "PatientBirthName",
                  "PatientMotherBirthName", "OtherPatientIDs", "IssuerOfPatientID")


def _identity_pattern(ds: Dataset) -> re.Pattern | None:
    """A pattern of the patient's name components and ids as this file holds them (also in
    Other Patient IDs Sequence), matched as whole words, in any letter case."""
    values = [ds.get(k) for k in _IDENTITY_TAGS]
    for item in ds.get("OtherPatientIDsSequence", None) or ():
        values.append(item.get("PatientID"))
    parts = set()
    for value in values:
        for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value]):
            parts.update(p for p in re.split(r"[\^=,\s]+", str(v or "")) if len(p) >= 2)
    if not parts:
        return None
    words = [re.escape(p) for p in sorted(parts, key=len, reverse=True)]
    # whole words; ideographic names (no spaces between words) match anywhere
    alternatives = "|".join(w if re.search("[\u2e80-\uffef]", w) else rf"(?<!\w){w}(?!\w)"
                            for w in words)
    return re.compile(alternatives, re.IGNORECASE)


def _record_method(ds: Dataset, ctx: _Context) -> None:
    """PatientIdentityRemoved, DeidentificationMethod (with the key id) and its code sequence
    (PS3.15 E.1.1: the method must be recorded in the de-identified instance)."""
    options = ["basic"] + (["dates"] if ctx.retain_dates else []) + \
        (["clean"] if ctx.clean else []) + (["patient"] if ctx.retain_patient else [])
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = ["megamed deid PS3.15 E.1 basic profile",
                                 f"key id {ctx.ps.key_id}"]
    codes = []
    for option in options:
        item = Dataset()
        item.CodeValue, item.CodeMeaning = _CODES[option]
        item.CodingSchemeDesignator = "DCM"
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if ctx.retain_dates else "REMOVED"


def _update_file_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    # the file is written by pydicom now; the source writer's ids could single out a site
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PYDICOM " + pydicom.__version__
    for tag in list(meta.keys()):
        # source AE, private info; the group length is recomputed (the fast path's way too)
        if int(tag) in (0x00020000, 0x00020016, 0x00020100, 0x00020102):
            del meta[tag]


def write_dicom(ds: Dataset, name: str) -> bytes:
    """The file bytes of a de-identified dataset, as the reference path writes them."""
    buffer = io.BytesIO()
    try:
        with quiet_pydicom():
            # a source without SOP UIDs cannot become a conformant file; write it as it came
            ds.save_as(buffer, enforce_file_format="SOPInstanceUID" in ds and "SOPClassUID" in ds)
    except Exception as e:
        raise DeidError(f"{name}: cannot write the de-identified file ({type(e).__name__})") \
            from None
    return buffer.getvalue()


def read_file_bytes(path, name: str) -> bytes:
    """The bytes of `path`; a DeidError naming `name` (and why) when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DeidError(f"{name}: no such file") from None
    except OSError as e:
        raise DeidError(f"{name}: cannot read ({e.strerror})") from None


def read_dicom(src, name: str | None = None) -> Dataset:
    """pydicom's reader, plus the checks it skips: it reads a truncated file silently.
    `src` is a path or a binary file object; `name` is the file name errors carry."""
    name = name or (os.fspath(src) if isinstance(src, (str, os.PathLike)) else "<bytes>")
    raw = read_file_bytes(src, name) if isinstance(src, (str, os.PathLike)) else src.read()
    fp = _StrictReader(raw)
    with quiet_pydicom() as caught:
        try:
            ds = pydicom.dcmread(fp)
            _check_complete(ds, fp, caught())
        except DeidError as e:
            raise DeidError(f"{name}: {e}") from None
        except Exception as e:
            raise DeidError(f"{name}: {_unreadable_reason(raw, e)}") from None
    ds.filename = name                     # refusals name the file, not "<in memory>"
    return ds


def _check_complete(ds: Dataset, fp: "_StrictReader", caught: list[str]) -> None:
    """DeidError (without the file name) where pydicom read less than the whole file."""
    if fp.short_header or any("End of file" in m for m in caught):
        raise DeidError("truncated: the file ends inside an element or sequence")
    if any(m.startswith("ERROR") for m in caught):   # pydicom stopped reading, kept the rest
        raise DeidError("corrupt: pydicom stopped reading at an element it cannot parse")
    if not len(ds):
        raise DeidError("no data elements after the file meta header (truncated?)")
    for raw_elem in ds._dict.values():
        length, value = getattr(raw_elem, "length", None), getattr(raw_elem, "value", None)
        if isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length:
            raise DeidError(f"truncated: element {raw_elem.tag} declares {length} bytes, "
                            f"the file holds {len(value)}")


class _StrictReader(io.BytesIO):
    """Notes a read of an element header (4 or 8 bytes) that finds only part of it: pydicom
    takes that for the end of the file and stops without a word."""
    short_header = False

    def read(self, n=-1):
        out = super().read(n)
        if n in (4, 8) and 0 < len(out) < n:
            self.short_header = True
        return out


def _unreadable_reason(raw: bytes, error: Exception) -> str:
    """Why pydicom could not read `raw`, in words that hold no value from the file (pydicom's
    own messages can quote element values)."""
    if not raw:
        return "empty file (0 bytes)"
    if len(raw) < 132 or raw[128:132] != b"DICM":
        return ("not a DICOM Part 10 file: no 128-byte preamble and 'DICM' marker (a bare "
                "dataset without file meta header is not accepted)")
    if isinstance(error, (EOFError, struct.error)) or "No tag to read" in str(error):
        return "truncated: the file ends inside an element"
    if isinstance(error, RecursionError):
        return "corrupt: sequences nested too deep to read"
    if isinstance(error, pydicom.errors.InvalidDicomError):
        return "malformed file meta header"
    return f"corrupt: not a readable DICOM file ({type(error).__name__} while parsing)"


@contextlib.contextmanager
def quiet_pydicom():
    """pydicom's warnings and log records quote element values ("Invalid value for VR DA:
    '19510304'"): while it reads or writes patient data they are caught here, never shown.
    Yields a function giving their messages so far ("ERROR: ..." for logged errors)."""
    logger = logging.getLogger("pydicom")
    logged: list[str] = []
    handler = _Collect(logged)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            yield lambda: logged + [str(w.message) for w in shown]
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _Collect(logging.Handler):
    """Keeps pydicom's logged errors (it logs some parse failures and reads on)."""

    def __init__(self, into: list):
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record):
        self.into.append(f"ERROR: {record.getMessage()}")


def original_values(ds: Dataset) -> Iterable[str]:
    """Every string value in `ds` (recursively), for tests and audits of what survived."""
    for elem in ds.iterall():
        if elem.VR in _TEXT_VRS and elem.value not in (None, ""):
            values = elem.value if elem.VM > 1 else [elem.value]
            for v in values:
                yield str(v)
