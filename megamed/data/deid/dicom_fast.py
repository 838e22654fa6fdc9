"""Fast path of DICOM file de-identification: bytes in, bytes out, with no pydicom Dataset.

The reference path (pydicom.dcmread, `dicom.deidentify_dicom`, `save_as`) builds a Python
object per element and re-encodes every value it touched; that caps it near 300 files/s per
core. Here the file is walked once (after a look at the top-level elements that say who the
patient is), each element's action comes from a per-(tag, VR) decision cached across files
(the same Annex E rules as `_apply`, read off the same tables), runs of untouched elements are
copied as one byte slice, and only the changed values are encoded. Sequences that are
rewritten get undefined lengths, as pydicom writes them; removed ones are only walked to count
the private elements inside (the reference counts them).

The reference path stays the definition: tests compare, element by element as pydicom reads
them back, this output with the reference output on every shipped pydicom file. Anything this
parser does not expect makes `_fast` give up (`_Unusual`) and the caller takes the reference
path: transfer syntaxes other than little endian explicit or implicit VR (big endian,
deflated), no preamble, VR UN outside private groups, elements of an implicit VR file whose VR
is ambiguous ("US or SS") and would be rewritten, non-ASCII or multi-valued patient ids,
malformed or truncated lengths, elements out of order, the Clean Descriptors option (it runs
the text de-identifier), and files the reference path would refuse (burned-in risk) or write without
the file format (no SOP UIDs), so its error message or output is the one the caller sees.
"""
from __future__ import annotations

import functools
import io
import os
import struct

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, UID_dictionary

from megamed.data.deid import dicom as ref
from megamed.data.deid.pseudonym import DeidError, Pseudonymizer

_HEADER = struct.Struct("<HH2sH")          # group, element, VR, 16-bit length
_LONG_LENGTH = struct.Struct("<I")
_ITEM = struct.Struct("<HHI")              # (FFFE,xxxx) item tags and their length
_UNDEFINED = 0xFFFFFFFF
_SHORT_VRS = frozenset(x.encode() for x in "AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST "
                       "TM UI UL US".split())
_LONG_VRS = frozenset(x.encode() for x in "OB OD OF OL OV OW SQ UC UN UR UT SV UV".split())
_PIXELS = 0x7FE00010
_ITEM_START = _ITEM.pack(0xFFFE, 0xE000, _UNDEFINED)
_ITEM_END = _ITEM.pack(0xFFFE, 0xE00D, 0)
_SEQUENCE_END = _ITEM.pack(0xFFFE, 0xE0DD, 0)
# elements the reference path sets after the rules (pseudonyms, the method record)
_PATIENT_NAME, _PATIENT_ID = 0x00100010, 0x00100020
_STUDY_UID, _SOP_CLASS, _SOP_INSTANCE = 0x0020000D, 0x00080016, 0x00080018
_BURNED_IN, _MODALITY = 0x00280301, 0x00080060
_METHOD_TAGS = (0x00120062, 0x00120063, 0x00120064, 0x00280303)
_OVERRIDDEN = frozenset((_PATIENT_NAME, _PATIENT_ID) + _METHOD_TAGS)

# what to do with one element (decided once per tag, VR and options); REPLACED: kept by the
# rules, then replaced by what the reference sets afterwards (pseudonyms, method record)
KEEP, DROP, PRIVATE, UIDS, SHIFT, EMPTY, DUMMY, RECURSE, UNUSUAL, REPLACED = range(10)


class _Unusual(Exception):
    """Input this parser does not handle: the caller takes the reference path."""


def deidentify_dicom_bytes(raw: bytes, pseudonymizer: Pseudonymizer, *, name: str = "<bytes>",
                           counts: dict | None = None, **options) -> bytes:
    """The de-identified DICOM file for the file bytes `raw`: the fast path, or the reference
    path (read, `deidentify_dicom`, write) where the fast path does not apply. `name` is the
    file name that errors carry. Options as `deidentify_dicom`."""
    out = fast_deidentify(raw, pseudonymizer, counts=counts, **options)
    if out is not None:
        return out
    return _reference(raw, pseudonymizer, name, counts, options)


def deidentify_dicom_file(src: str | os.PathLike, dst: str | os.PathLike | None,
                          pseudonymizer: Pseudonymizer, **options) -> pydicom.Dataset | None:
    """Read `src`, de-identify, write to `dst`. Errors name `src`, never a value.

    With `dst`, the file goes through the fast path (`dicom_fast`: bytes to bytes, the same
    elements as the reference path, which it falls back to on anything unusual) and nothing
    is returned. Without `dst`: the de-identified Dataset (the reference path)."""
    if dst is None:
        return ref.deidentify_dicom(ref.read_dicom(src), pseudonymizer, in_place=True, **options)
    raw = ref.read_file_bytes(src, os.fspath(src))
    out = deidentify_dicom_bytes(raw, pseudonymizer, name=os.fspath(src), **options)
    try:
        with open(dst, "wb") as f:
            f.write(out)
    except OSError as e:
        raise DeidError(f"{dst}: cannot write the de-identified file ({e.strerror})") from None
    return None


def _reference(raw: bytes, ps: Pseudonymizer, name: str, counts, options) -> bytes:
    ds = ref.read_dicom(io.BytesIO(raw), name=name)
    ds = ref.deidentify_dicom(ds, ps, in_place=True, counts=counts, **options)
    return ref.write_dicom(ds, name)


def fast_deidentify(raw: bytes, ps: Pseudonymizer, *, allow_burned_in: bool = False,
                    retain_dates: bool = True, clean_descriptors: bool = False,
                    retain_patient_characteristics: bool = False,
                    counts: dict | None = None) -> bytes | None:
    """The fast path alone: the output bytes, or None where the reference path must run."""
    if clean_descriptors:
        return None
    local: dict = {}
    try:
        out = _fast(raw, ps, allow_burned_in, retain_dates, retain_patient_characteristics, local)
    except (_Unusual, struct.error, UnicodeDecodeError, ValueError, RecursionError):
        return None                     # RecursionError: sequences nested absurdly deep
    if counts is not None:              # counted only when the fast path finished
        for k, v in local.items():
            counts[k] = counts.get(k, 0) + v
    return out


class _Run:
    def __init__(self, raw, ps, shift, retain_dates, retain_patient, counts, implicit):
        self.raw, self.ps, self.shift, self.counts = raw, ps, shift, counts
        self.implicit = implicit
        self.options = (retain_dates, retain_patient)
        # decisions by (tag, VR) for these options: a dict lookup per element
        self.decisions = _DECISIONS.setdefault(self.options, {})
        if len(self.decisions) >= 1 << 16:  # bounded: private tags vary without end
            self.decisions.clear()


def _fast(raw, ps, allow_burned_in, retain_dates, retain_patient, counts) -> bytes:
    if len(raw) < 132 or raw[128:132] != b"DICM":
        raise _Unusual
    meta, pos, implicit = _read_meta(raw)
    if implicit and raw[pos + 4:pos + 6] in _SHORT_VRS | _LONG_VRS:
        raise _Unusual                   # pydicom would read it as explicit VR after all
    top = _looked_up(raw, pos, implicit)
    if not allow_burned_in and _burned_in_risk(raw, top):
        raise _Unusual                   # the reference path raises the DeidError
    patient = _text(raw, top.get(_PATIENT_ID)).strip() or \
        _text(raw, top.get(_PATIENT_NAME)).strip() or _text(raw, top.get(_STUDY_UID))
    run = _Run(raw, ps, ref.dt.timedelta(days=ps.date_shift_days(patient)), retain_dates,
               retain_patient, counts, implicit)
    inserts = _inserts(ps, patient, retain_dates, retain_patient, top, implicit)
    body: list = []
    if _process(run, pos, len(raw), False, body, inserts) != len(raw):
        raise _Unusual
    # the file meta takes the dataset's SOP UIDs: the class as it is, the instance remapped
    sop_class, sop_instance = _text(raw, top.get(_SOP_CLASS)), _text(raw, top.get(_SOP_INSTANCE))
    if not sop_class or not sop_instance or top[_SOP_CLASS][1] != b"UI" or \
            top[_SOP_INSTANCE][1] != b"UI":
        raise _Unusual                   # the reference writes such a file without file meta
    sop_instance = _remap(ps, sop_instance)
    head = _write_meta(raw, meta, sop_class, sop_instance)
    return b"".join([raw[:128], b"DICM", head] + body)


_LOOKED_UP = frozenset((_PATIENT_NAME, _PATIENT_ID, _STUDY_UID, _BURNED_IN, _MODALITY,
                        _SOP_CLASS, _SOP_INSTANCE) +
                       _METHOD_TAGS)
_LAST_LOOKED_UP = max(_LOOKED_UP)


def _looked_up(raw: bytes, pos: int, implicit: bool) -> dict:
    """{tag: (tag, vr, start, value start, value end)} of the top-level elements the rules
    need before the pass (the patient, burned-in flags, SOP UIDs); stops past the last one."""
    top = {}
    while pos < len(raw):
        if implicit:
            group, element, length = _ITEM.unpack_from(raw, pos)
            vr, vstart = _implicit_vr(group << 16 | element), pos + 8
        else:
            group, element, vr, length = _HEADER.unpack_from(raw, pos)
            vstart = pos + 8
            if vr in _LONG_VRS:
                length = _LONG_LENGTH.unpack_from(raw, vstart)[0]
                vstart += 4
        tag = group << 16 | element
        if tag > _LAST_LOOKED_UP:
            break
        if length == _UNDEFINED:
            vend = _private_in_items(raw, implicit, None, vstart, len(raw), True)
        else:
            vend = vstart + length
        if tag in _LOOKED_UP:
            top[tag] = (tag, vr, pos, vstart, vend)
        pos = vend
    return top


def _text(raw: bytes, elem) -> str:
    """A single ASCII string value as pydicom decodes it (trailing NUL/space removed)."""
    if elem is None:
        return ""
    value = raw[elem[3]:elem[4]].rstrip(b"\0 ").decode("ascii")
    if "\\" in value:
        raise _Unusual                   # multi-valued: str() of a pydicom MultiValue
    return value


def _burned_in_risk(raw: bytes, top: dict) -> bool:
    if _BURNED_IN in top:
        return _text(raw, top[_BURNED_IN]).strip().upper() == "YES"
    return _text(raw, top.get(_MODALITY)).strip().upper() in ref.BURNED_IN_MODALITIES


# --- parsing ----------------------------------------------------------------------------

def _read_meta(raw: bytes) -> tuple[dict, int, bool]:
    """File meta elements {tag: (vr, start, value start, end)}, where the dataset starts and
    whether it is in implicit VR."""
    meta, pos = {}, 132
    while pos + 8 <= len(raw):
        group, element, vr, length = _HEADER.unpack_from(raw, pos)
        if group != 2:
            break
        vstart = pos + 8
        if vr in _LONG_VRS:
            length = _LONG_LENGTH.unpack_from(raw, pos + 8)[0]
            vstart = pos + 12
        elif vr not in _SHORT_VRS:
            raise _Unusual
        if length == _UNDEFINED or vstart + length > len(raw):
            raise _Unusual
        meta[0x20000 | element] = (vr, pos, vstart, vstart + length)
        pos = vstart + length
    syntax = raw[meta[0x00020010][2]:meta[0x00020010][3]].rstrip(b"\0 ").decode("ascii") \
        if 0x00020010 in meta else ""
    uid = UID(syntax)
    if not syntax or not uid.is_transfer_syntax or not uid.is_little_endian or uid.is_deflated:
        raise _Unusual
    return meta, pos, uid.is_implicit_VR


@functools.lru_cache(maxsize=None)
def _implicit_vr(tag: int) -> bytes:
    """The dictionary VR pydicom gives an element of an implicit VR file; "??" where it is
    ambiguous ("US or SS") and pydicom resolves it from other elements."""
    if tag & 0x10000:
        return b"UN"
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return b"UN"
    return vr.encode() if len(vr) == 2 else b"??"


def _skip_fragments(raw: bytes, pos: int, end: int) -> int:
    """End of encapsulated pixel data (items of defined length, then a delimiter)."""
    while True:
        group, element, length = _ITEM.unpack_from(raw, pos)
        pos += 8
        if group != 0xFFFE:
            raise _Unusual
        if element == 0xE0DD:
            return pos
        if element != 0xE000 or pos + length > end:
            raise _Unusual
        pos += length


# --- the rules ----------------------------------------------------------------------------

_DECISIONS: dict[tuple, dict] = {}     # options -> {(tag, VR): decision}; few distinct keys


def _decide(tag: int, vr_bytes: bytes, retain_dates: bool,
            retain_patient: bool) -> tuple[int, str | None]:
    """(what to do, what to count): `dicom._apply`, `_keep` and `_do` decided once per tag/VR.
    UIDs are counted where they are remapped (`_uids`)."""
    vr = vr_bytes.decode()
    what, count = _decide_vr(tag, vr, retain_dates, retain_patient)
    if vr == "??" and what not in (KEEP, DROP):
        return UNUSUAL, None             # an ambiguous VR (implicit files) is not rewritten
    if what == KEEP and tag in _OVERRIDDEN:
        return REPLACED, count
    return what, count


def _decide_vr(tag: int, vr: str, retain_dates: bool, retain_patient: bool):
    if tag & 0x10000:
        return PRIVATE, "private"
    if not tag & 0xFFFF:
        return DROP, None                # group lengths: pydicom's writer leaves them out
    if tag in (_PIXELS, 0x54001010):
        return KEEP, None
    action = ref.ACTIONS.get(tag)
    if action is None and (tag >> 24) in (0x50, 0x60):
        action = ref._action_for(tag)
    if action is None and vr not in ref._TOUCHED_VRS:
        return KEEP, None
    keep_characteristic = retain_patient and tag in ref.PATIENT_CHARACTERISTICS
    if (action == "X" or (action == "X/D" and vr not in ("DA", "DT"))) and not keep_characteristic:
        return DROP, "X"
    if keep_characteristic:
        return (UNUSUAL if vr == "SQ" else KEEP), "K"
    if action is None:
        if vr == "SQ":
            return RECURSE, None
        return (UIDS, None) if vr == "UI" else _date(False, "Z", retain_dates)
    if action == "U" or (action == "D" and vr == "UI"):
        return (UIDS, None) if vr == "UI" else (UNUSUAL, None)
    if action == "X/Z/U*":
        return (RECURSE, "U") if vr == "SQ" else (UNUSUAL, None)
    if vr in ("DA", "DT") and action != "X" and tag != 0x00100030:
        return _date(True, "X" if action.startswith("X") else "Z", retain_dates)
    if action in ("X", "X/D"):
        return DROP, "X"
    if action in ("Z", "Z/D", "X/Z", "X/Z/D"):
        return EMPTY, "Z"
    if action == "D":
        return (RECURSE, "D") if vr == "SQ" else (DUMMY, "D")
    return DROP, "X"


def _date(in_dataset: bool, removed: str, retain_dates: bool) -> tuple[int, str]:
    """`dicom._shift_or_remove`."""
    if retain_dates:
        return SHIFT, "shift"
    if not in_dataset or removed == "Z":
        return EMPTY, "Z"
    return DROP, "X"


def _process(run: _Run, pos: int, end: int, in_item: bool, out: list,
             inserts: list | None = None) -> int:
    """De-identify the elements from `pos` to `end` (or to the item delimiter when `in_item`)
    into `out` in one pass; the position after them. `inserts` (top level only): sorted
    (tag, bytes) elements that replace or join the dataset's own."""
    raw, counts, options, implicit = run.raw, run.counts, run.options, run.implicit
    decisions = run.decisions
    unpack = _ITEM.unpack_from if implicit else _HEADER.unpack_from
    start = stop = last = -1             # the run of untouched elements not yet copied
    next_insert = inserts[0][0] if inserts else 1 << 32
    while pos < end:
        if implicit:
            group, element, length = unpack(raw, pos)
            vr = None
        else:
            group, element, vr, length = unpack(raw, pos)
        tag = group << 16 | element
        if group == 0xFFFE:
            if in_item and element == 0xE00D:
                break
            raise _Unusual
        if tag <= last:
            raise _Unusual               # out of order: pydicom would sort on writing
        last = tag
        vstart = pos + 8
        if implicit:
            vr = _implicit_vr(tag)
        elif vr in _LONG_VRS:
            length = _LONG_LENGTH.unpack_from(raw, vstart)[0]
            vstart += 4
            if vr == b"UN" and not group & 1:
                raise _Unusual           # pydicom may re-read it under its dictionary VR
        elif vr not in _SHORT_VRS:
            raise _Unusual
        if tag >= next_insert:
            if start >= 0:
                out.append(raw[start:stop])
                start = -1
            while inserts and inserts[0][0] <= tag:
                out.append(inserts.pop(0)[1])
            next_insert = inserts[0][0] if inserts else 1 << 32
        decision = decisions.get((tag, vr))
        if decision is None:
            decision = decisions[tag, vr] = _decide(tag, vr, *options)
        what, count = decision
        if count is not None:
            counts[count] = counts.get(count, 0) + 1
        vend = vstart + length
        if what == KEEP and length != _UNDEFINED:        # the common case first
            if vend > end:
                raise _Unusual
            if start < 0:
                start = pos
            stop = pos = vend
            continue
        if what == RECURSE:
            if length != _UNDEFINED and vend > end:
                raise _Unusual
            if start >= 0:
                out.append(raw[start:stop])
                start = -1
            target = out if tag not in _OVERRIDDEN else []    # counted, then replaced
            target.append(_element(tag, b"SQ", b"", implicit, _UNDEFINED))
            pos = _process_items(run, vstart, end if length == _UNDEFINED else vend,
                                 length == _UNDEFINED, target)
            target.append(_SEQUENCE_END)
            continue
        if length == _UNDEFINED:
            if tag == _PIXELS and not implicit:
                vend = _skip_fragments(raw, vstart, end)
            elif vr == b"SQ" or (implicit and group & 1):
                vend = _private_in_items(raw, implicit, counts if what in (DROP, EMPTY) else None,
                                         vstart, end, True)
            else:
                raise _Unusual
        elif vend > end:
            raise _Unusual               # truncated: the reference path names the element
        elif vr == b"SQ" and what in (DROP, EMPTY):   # the reference removes private ones first
            _private_in_items(raw, implicit, counts, vstart, vend, False)
        if what == KEEP:
            if start < 0:
                start = pos
            stop = pos = vend
            continue
        if start >= 0:
            out.append(raw[start:stop])
            start = -1
        pos = vend
        target = out if tag not in _OVERRIDDEN else []
        if what == PRIVATE or what == REPLACED:
            pass                         # removed whole, or an overridden tag (re-inserted)
        elif what in (DROP, EMPTY):
            if what == EMPTY:
                target.append(_element(tag, vr, b"", implicit))
        elif what == UIDS:
            target.append(_uids(run, tag, vr, raw[vstart:vend], counts))
        elif what == SHIFT:
            target.append(_shifted(run, tag, vr, raw[vstart:vend]))
        elif what == DUMMY:
            target.append(_element(tag, vr, _dummy(vr), implicit))
        else:
            raise _Unusual
    else:
        if in_item:
            raise _Unusual               # no item delimiter
    if start >= 0:
        out.append(raw[start:stop])
    while inserts:
        out.append(inserts.pop(0)[1])
    return pos + 8 if in_item and pos < end else pos


def _process_items(run: _Run, pos: int, end: int, undefined: bool, out: list) -> int:
    """The items of a sequence, each de-identified, written with undefined lengths."""
    while pos < end:
        group, element, length = _ITEM.unpack_from(run.raw, pos)
        if group != 0xFFFE:
            raise _Unusual
        if element == 0xE0DD and undefined:
            return pos + 8
        if element != 0xE000:
            raise _Unusual
        out.append(_ITEM_START)
        if length == _UNDEFINED:
            pos = _process(run, pos + 8, end, True, out)
        else:
            if pos + 8 + length > end:
                raise _Unusual
            if _process(run, pos + 8, pos + 8 + length, False, out) != pos + 8 + length:
                raise _Unusual
            pos += 8 + length
        out.append(_ITEM_END)
    if undefined or pos != end:
        raise _Unusual
    return pos


def _private_in_items(raw: bytes, implicit: bool, counts: dict | None, pos: int, end: int,
                      undefined: bool) -> int:
    """Walk the items of a sequence that is skipped, removed or emptied: count the private
    elements in it into `counts` if given (the reference removes those first and counts them),
    and return the sequence's end."""
    while pos < end:
        group, element, length = _ITEM.unpack_from(raw, pos)
        if group != 0xFFFE:
            raise _Unusual
        pos += 8
        if element == 0xE0DD and undefined:
            return pos
        if element != 0xE000:
            raise _Unusual
        item_end = end if length == _UNDEFINED else pos + length
        if item_end > end:
            raise _Unusual
        pos = _private_in_item(raw, implicit, counts, pos, item_end, length == _UNDEFINED)
    if undefined or pos != end:
        raise _Unusual
    return pos


def _private_in_item(raw: bytes, implicit: bool, counts: dict | None, pos: int, end: int,
                     undefined: bool) -> int:
    while pos < end:
        if implicit:
            group, element, length = _ITEM.unpack_from(raw, pos)
            vr = _implicit_vr(group << 16 | element)
        else:
            group, element, vr, length = _HEADER.unpack_from(raw, pos)
        if group == 0xFFFE:
            if undefined and element == 0xE00D:
                return pos + 8
            raise _Unusual
        vstart = pos + 8
        if not implicit:
            if vr in _LONG_VRS:
                length = _LONG_LENGTH.unpack_from(raw, vstart)[0]
                vstart += 4
            elif vr not in _SHORT_VRS:
                raise _Unusual
        private = group & 1
        if private and counts is not None:
            counts["private"] = counts.get("private", 0) + 1
        if length == _UNDEFINED:
            if vr != b"SQ" and not (implicit and private):
                raise _Unusual
            pos = _private_in_items(raw, implicit, None if private else counts, vstart, end, True)
        else:
            pos = vstart + length
            if pos > end:
                raise _Unusual
            if vr == b"SQ" and not private:
                _private_in_items(raw, implicit, counts, vstart, pos, False)
    if undefined:
        raise _Unusual
    return pos


def _uids(run: _Run, tag: int, vr: bytes, value: bytes, counts: dict) -> bytes:
    """`dicom._remap_uids`: standard UIDs kept, others keyed."""
    text = value.decode("latin-1").rstrip("\0 ")
    if tag in ref._KEEP_UIDS or not text:
        return _element(tag, vr, value, run.implicit)
    counts["U"] = counts.get("U", 0) + 1
    return _element(tag, vr, _pad(_remap(run.ps, text).encode("latin-1"), b"\0"), run.implicit)


def _remap(ps: Pseudonymizer, text: str) -> str:
    uid = ps.uid
    return "\\".join(v if v in UID_dictionary else uid(v) for v in text.split("\\"))


def _shifted(run: _Run, tag: int, vr: bytes, value: bytes) -> bytes:
    """`dicom._shift_or_remove` with dates kept: every date moved by the patient's offset."""
    values = value.decode("latin-1").rstrip(" \0").split("\\")
    shifted = [ref._shift_one(v, vr.decode(), run.shift) for v in values if v]
    if not shifted:
        return _element(tag, vr, value, run.implicit)
    new = "\\".join(s for s in shifted if s).encode("latin-1")
    return _element(tag, vr, _pad(new, b" "), run.implicit)


_NUMBERS = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d", "UV": "<Q",
            "SV": "<q"}


@functools.lru_cache(maxsize=None)
def _dummy(vr: bytes) -> bytes:
    """`dicom._dummy`, encoded."""
    name = vr.decode()
    if name in ref._DUMMY:
        return _pad(ref._DUMMY[name].encode("ascii"), b" ")
    if name in _NUMBERS:
        return struct.pack(_NUMBERS[name], 0)
    if name in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    return b""


def _pad(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) & 1 else value


def _element(tag: int, vr: bytes, value: bytes, implicit: bool = False,
             length: int | None = None) -> bytes:
    """One encoded element; `length` overrides len(value) (undefined-length sequences)."""
    length = len(value) if length is None else length
    if implicit:
        return _ITEM.pack(tag >> 16, tag & 0xFFFF, length) + value
    if vr in _LONG_VRS:
        return _HEADER.pack(tag >> 16, tag & 0xFFFF, vr, 0) + _LONG_LENGTH.pack(length) + value
    if length > 0xFFFF:
        raise _Unusual
    return _HEADER.pack(tag >> 16, tag & 0xFFFF, vr, length) + value


def _text_element(tag: int, vr: str, value: str, implicit: bool = False) -> bytes:
    return _element(tag, vr.encode(), _pad(value.encode("ascii"), b"\0" if vr == "UI" else b" "),
                    implicit)


# --- what the reference path sets after the rules -------------------------------------------

def _inserts(ps: Pseudonymizer, patient: str, retain_dates: bool, retain_patient: bool,
             top: dict, implicit: bool) -> list:
    """`ds.PatientName/PatientID = ...` and `dicom._record_method`, as sorted encoded elements."""
    for tag in _OVERRIDDEN:          # pydicom keeps an existing element's VR on assignment
        if tag in top and top[tag][1].decode() != dictionary_VR(tag):
            raise _Unusual
    method = "\\".join(["megamed deid PS3.15 E.1 basic profile", f"key id {ps.key_id}"])
    options = ["basic"] + (["dates"] if retain_dates else []) + \
        (["patient"] if retain_patient else [])
    def text(tag, vr, value):
        return _text_element(tag, vr, value, implicit)
    codes = [_ITEM_START + text(0x00080100, "SH", ref._CODES[o][0]) +
             text(0x00080102, "SH", "DCM") + text(0x00080104, "LO", ref._CODES[o][1]) +
             _ITEM_END for o in options]
    sequence = _element(0x00120064, b"SQ", b"".join(codes) + _SEQUENCE_END, implicit, _UNDEFINED)
    return [
        (_PATIENT_NAME, text(_PATIENT_NAME, "PN", ps.patient_name(patient))),
        (_PATIENT_ID, text(_PATIENT_ID, "LO", ps.patient_id(patient))),
        (0x00120062, text(0x00120062, "CS", "YES")),
        (0x00120063, text(0x00120063, "LO", method)),
        (0x00120064, sequence),
        (0x00280303, text(0x00280303, "CS", "MODIFIED" if retain_dates else "REMOVED")),
    ]


_META_DROPPED = (0x00020000, 0x00020016, 0x00020100, 0x00020102)


def _write_meta(raw: bytes, meta: dict, sop_class: str, sop_instance: str) -> bytes:
    """`dicom._update_file_meta` and pydicom's file meta writer: the group length first."""
    new = {tag: raw[pos:end] for tag, (vr, pos, _, end) in meta.items() if tag not in _META_DROPPED}
    if 0x00020001 not in meta or meta[0x00020001][2] == meta[0x00020001][3]:
        new[0x00020001] = _element(0x00020001, b"OB", b"\x00\x01")
    new[0x00020002] = _text_element(0x00020002, _meta_vr(meta, 0x00020002), sop_class)
    new[0x00020003] = _text_element(0x00020003, _meta_vr(meta, 0x00020003), sop_instance)
    new[0x00020012] = _text_element(0x00020012, _meta_vr(meta, 0x00020012),
                                    PYDICOM_IMPLEMENTATION_UID)
    new[0x00020013] = _text_element(0x00020013, _meta_vr(meta, 0x00020013),
                                    "PYDICOM " + pydicom.__version__)
    body = b"".join(new[tag] for tag in sorted(new))
    return _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def _meta_vr(meta: dict, tag: int) -> str:
    return meta[tag][0].decode() if tag in meta else dictionary_VR(tag)
