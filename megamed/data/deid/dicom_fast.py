"""Fast path of DICOM file de-identification: bytes in, bytes out, with no pydicom Dataset.

The reference path (pydicom.dcmread, `dicom.deidentify_dicom`, `save_as`) builds a Python
object per element and re-encodes every value it touched; that caps it near 300 files/s per
core. Here the file is walked once, in one loop (kept sequences are entered with a stack, not
a call per item). Each element costs one dict lookup keyed by its first 8 header bytes (tag,
VR, 16-bit length): the decision holds the action (the same Annex E rules as `_apply`, read
off the same tables), the element's size and, for removed, emptied or dummy elements, the
bytes that replace it. Runs of untouched elements, items and sequences that came with
undefined lengths included, are copied as one byte slice; only changed values are encoded.
What depends on the patient (PatientID comes after the study dates) is filled into its place
once the pass is over: shifted dates, the pseudonyms, the method record. Sequences that are
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
import weakref

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
# rules, then replaced by what the reference sets afterwards (pseudonyms, method record);
# KEEP_COUNTED: kept and counted (Retain Patient Characteristics); LOOKED_UP: kept, and read
# once the pass is over (Modality, Burned In Annotation); DELIMITER: an item's end
# FIXED: replaced by the same bytes in every file (removed: none; emptied; a dummy value)
(KEEP, DROP, PRIVATE, UIDS, SHIFT, EMPTY, DUMMY, RECURSE, UNUSUAL, REPLACED, KEEP_COUNTED,
 LOOKED_UP, DELIMITER, FIXED) = range(14)


# Sequences nested deeper than this go to the reference path, which refuses what pydicom's
# recursive reader cannot parse: both paths then agree on absurd files.
_MAX_DEPTH = 128


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
        out = _fast(bytes(raw), ps, allow_burned_in, retain_dates,
                    retain_patient_characteristics, local)
    except (_Unusual, struct.error, UnicodeDecodeError, ValueError, RecursionError):
        return None                     # RecursionError: sequences nested absurdly deep
    if counts is not None:              # counted only when the fast path finished
        for k, v in local.items():
            counts[k] = counts.get(k, 0) + v
    return out


class _Run:
    """One file's pass: its bytes, the cached decisions for its header form and options, and
    what waits for the patient, who is known only when the pass is over (PatientID comes after
    the study dates): the dates to shift and the places of the pseudonyms and method record."""

    def __init__(self, raw, ps, options, implicit, counts):
        self.raw, self.ps, self.options, self.implicit, self.counts = \
            raw, ps, options, implicit, counts
        tables = _TABLES.get((options, implicit))
        if tables is None or max(map(len, tables)) >= 1 << 16:
            # bounded: private tags and lengths vary without end
            tables = _TABLES[options, implicit] = ({}, {}, _WALKS.setdefault(implicit, {}))
            tables[2].clear()
        self.decisions, self.rules, self.walks = tables
        self.top: dict = {}       # {tag: (tag, vr, start, value start, end)}, see _LOOKED_UP
        self.dates: list = []     # (output list, index, tag, vr, value): shifted at the end
        self.insert_at: list = []  # (index in the top-level output, tag of the insert)

    def decide(self, key: bytes) -> tuple:
        decision = self.decisions[key] = _decide_header(key, self.implicit, self.options,
                                                        self.rules)
        return decision

    def walk(self, key: bytes) -> tuple:
        """(kind, size) of the header `key` in a sequence that is only walked (`_walk_items`):
        an element of `size` bytes (_SKIP, _SKIP_PRIVATE), an item of undefined length
        (_ITEM_UNDEFINED) or of `size` bytes with its header (_ITEM_DEFINED), an item's or the
        sequence's delimiter, or another element (_LOOK: a sequence, a long VR)."""
        group, element, length = _ITEM.unpack_from(key) if len(key) == 8 else (0, 0, 0)
        size = 0
        if group == 0xFFFE:
            kind = _ITEM_KINDS.get(element, _LOOK)
            if kind == _ITEM_UNDEFINED and length != _UNDEFINED:
                kind, size = _ITEM_DEFINED, 8 + length
        else:
            _, _, _, tag, vr, _, _, size = self.decisions.get(key) or self.decide(key)
            kind = _LOOK if not size or tag < 0 or vr == b"SQ" else \
                _SKIP_PRIVATE if tag & 0x10000 else _SKIP
        self.walks[key] = kind, size
        return kind, size


def _fast(raw, ps, allow_burned_in, retain_dates, retain_patient, counts) -> bytes:
    if len(raw) < 132 or raw[128:132] != b"DICM":
        raise _Unusual
    meta, pos, implicit = _read_meta(raw)
    if implicit and raw[pos + 4:pos + 6] in _ANY_VR:
        raise _Unusual                   # pydicom would read it as explicit VR after all
    run = _Run(raw, ps, (retain_dates, retain_patient), implicit, counts)
    body: list = []
    if _process(run, pos, len(raw), body) != len(raw):
        raise _Unusual
    top = run.top
    if not allow_burned_in and _burned_in_risk(raw, top):
        raise _Unusual                   # the reference path raises the DeidError
    for tag in _OVERRIDDEN:              # pydicom keeps an existing element's VR on assignment
        if tag in top and top[tag][1] != _DICTIONARY_VRS[tag]:
            raise _Unusual
    patient = _text(raw, top.get(_PATIENT_ID)).strip() or \
        _text(raw, top.get(_PATIENT_NAME)).strip() or _text(raw, top.get(_STUDY_UID))
    name, patient_id, shift = _patient(ps, patient, implicit)
    for target, index, tag, vr, value in run.dates:
        target[index] = _shifted(shift, tag, vr, value, implicit)
    method = _method_record(ps.key_id, retain_dates, retain_patient, implicit)
    for index, tag in run.insert_at:     # `ds.PatientName/PatientID = ...`, `_record_method`
        body[index] = name if tag == _PATIENT_NAME else patient_id if tag == _PATIENT_ID \
            else method[tag]
    # the file meta takes the dataset's SOP UIDs: the class as it is, the instance remapped
    sop_class, sop_instance = _text(raw, top.get(_SOP_CLASS)), _text(raw, top.get(_SOP_INSTANCE))
    if not sop_class or not sop_instance or top[_SOP_CLASS][1] != b"UI" or \
            top[_SOP_INSTANCE][1] != b"UI":
        raise _Unusual                   # the reference writes such a file without file meta
    sop_instance = _remap(ps, sop_instance)
    head = _write_meta(raw, meta, sop_class, sop_instance)
    body[:0] = (raw[:128], b"DICM", head)
    return b"".join(body)


# top-level elements the rules need once the pass is over (the patient, burned-in flags, SOP
# UIDs, the VRs of the elements that are set afterwards)
_LOOKED_UP = frozenset((_PATIENT_NAME, _PATIENT_ID, _STUDY_UID, _BURNED_IN, _MODALITY,
                        _SOP_CLASS, _SOP_INSTANCE) + _METHOD_TAGS)
_DICTIONARY_VRS = {tag: dictionary_VR(tag).encode() for tag in _OVERRIDDEN}


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
    syntax = meta.get(0x00020010)
    implicit = _implicit_syntax(raw[syntax[2]:syntax[3]] if syntax else b"")
    if implicit is None:
        raise _Unusual
    return meta, pos, implicit


@functools.lru_cache(maxsize=64)
def _implicit_syntax(value: bytes) -> bool | None:
    """Whether the transfer syntax is implicit VR little endian; None for those this parser
    does not read (big endian, deflated, unknown)."""
    syntax = value.rstrip(b"\0 ").decode("ascii")
    uid = UID(syntax)
    if not syntax or not uid.is_transfer_syntax or not uid.is_little_endian or uid.is_deflated:
        return None
    return uid.is_implicit_VR


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

# (options, implicit) -> (decisions, rules, walks). decisions: {an element's first 8 bytes
# (tag, VR and 16-bit length; implicit VR: tag and length): (what, count, the FIXED bytes or
# the header of a RECURSE sequence, tag, VR, header size, length reader, element size: 0
# where the length is not in those 8 bytes or is undefined)}; rules: {(tag, VR): _rule(...)};
# walks (the same for all options): {first 8 bytes: _Run.walk(...)}. Files of one scanner
# repeat their headers, so nearly every element is one dict lookup.
_TABLES: dict[tuple, tuple] = {}
_WALKS: dict[bool, dict] = {}
_SHORT_LENGTH = struct.Struct("<6xH").unpack_from     # explicit VR, 16-bit length
_LONG_LENGTH_AT = struct.Struct("<8xI").unpack_from   # explicit VR OB, SQ, UN...: 32-bit
_TAG_LENGTH = struct.Struct("<4xI").unpack_from       # implicit VR, and items
_KEY = struct.Struct("<HH")
_ANY_VR = _SHORT_VRS | _LONG_VRS
# a header no element may have (an item tag, a bad VR): tag -1 fails the order check
_BAD = (UNUSUAL, None, None, -1, None, 8, _TAG_LENGTH, 0)
_DELIMITER = (DELIMITER, None, None, -1, None, 8, _TAG_LENGTH, 0)


def _decide_header(key: bytes, implicit: bool, options: tuple, rules: dict) -> tuple:
    """The decision for one element header (see _TABLES): where its value starts, how its
    length is read, and what the rules do with it."""
    if len(key) < 8:
        return _BAD
    group, element = _KEY.unpack_from(key)
    tag = group << 16 | element
    if group == 0xFFFE:
        return _DELIMITER if element == 0xE00D else _BAD
    if implicit:
        vr, header, length_of = _implicit_vr(tag), 8, _TAG_LENGTH
        length = _TAG_LENGTH(key)[0]
        size = 8 + length if length != _UNDEFINED else 0
    else:
        vr = key[4:6]
        if vr in _LONG_VRS:
            header, length_of, size = 12, _LONG_LENGTH_AT, 0
        elif vr in _SHORT_VRS:
            header, length_of = 8, _SHORT_LENGTH
            size = 8 + _SHORT_LENGTH(key)[0]
        else:
            return _BAD
    rule = rules.get((tag, vr))
    if rule is None:
        rule = rules[tag, vr] = _rule(tag, vr, group, implicit, options)
    return rule + (tag, vr, header, length_of, size)


def _rule(tag: int, vr: bytes, group: int, implicit: bool, options: tuple) -> tuple:
    """(what, count, the FIXED bytes) for an element with this tag and VR."""
    what, count = _decide(tag, vr, *options)
    if vr == b"UN" and not implicit and not group & 1:
        what = UNUSUAL                   # pydicom may re-read it under its dictionary VR
    elif what == KEEP and count is not None:
        what = KEEP_COUNTED
    elif what == UIDS and tag in ref._KEEP_UIDS:   # written as they came
        what = LOOKED_UP if tag in _LOOKED_UP else KEEP
    elif what == KEEP and tag in _LOOKED_UP:
        what = LOOKED_UP
    elif what in (DROP, EMPTY, DUMMY) and vr != b"SQ" and tag not in _LOOKED_UP:
        value = b"" if what == EMPTY else _dummy(vr)
        return FIXED, count, b"" if what == DROP else _element(tag, vr, value, implicit)
    elif what == RECURSE:                # the header it is written with
        return what, count, _element(tag, b"SQ", b"", implicit, _UNDEFINED)
    return what, count, None


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


# what `_walk_items` sees (`_Run.walk`)
_SKIP, _SKIP_PRIVATE, _LOOK, _ITEM_UNDEFINED, _ITEM_DEFINED, _ITEM_DELIMITER, \
    _SEQUENCE_DELIMITER = range(7)
_ITEM_KINDS = {0xE000: _ITEM_UNDEFINED, 0xE00D: _ITEM_DELIMITER, 0xE0DD: _SEQUENCE_DELIMITER}
_INSERT_TAGS = tuple(sorted(_OVERRIDDEN))
_NEVER = 1 << 32


def _process(run: _Run, pos: int, end: int, out: list) -> int:
    """De-identify the dataset's elements from `pos` to `end` into `out` in one pass; the
    position after them. The sequences that are kept are entered in the same loop (a stack
    of the enclosing levels: a call per item would cost more than its elements) and written
    with undefined lengths. The elements the reference sets afterwards (pseudonyms, method
    record) get their places in the top level of `out`, filled in by `_fast`."""
    raw, counts, implicit = run.raw, run.counts, run.implicit
    get = run.decisions.get
    start = stop = last = -1             # the run of untouched elements not yet copied
    private = 0
    inserts = list(_INSERT_TAGS)
    next_insert = inserts[0]
    in_item = False                      # the level is an item of undefined length
    stack: list = []                     # the enclosing levels of the sequence entered
    seq_end = seq_undefined = None       # the sequence whose items are being read
    while True:
        entered = False                  # a sequence was entered, rather than an item ended
        while pos < end:
            key = raw[pos:pos + 8]
            what, count, fixed, tag, vr, header, length_of, size = get(key) or run.decide(key)
            if tag <= last:              # out of order (pydicom would sort on writing), an
                if what == DELIMITER and in_item:    # item tag or a bad VR; or the item's end
                    break
                raise _Unusual
            last = tag
            vend = pos + (size or header + length_of(raw, pos)[0])
            if tag >= next_insert:
                if start >= 0:
                    out.append(raw[start:stop])
                    start = -1
                while inserts and inserts[0] <= tag:
                    run.insert_at.append((len(out), inserts.pop(0)))
                    out.append(None)
                next_insert = inserts[0] if inserts else _NEVER
            if vend <= end:              # defined length (undefined is 0xFFFFFFFF)
                if not what:             # KEEP, the common case first
                    if start < 0:
                        start = pos
                    stop = pos = vend
                    continue
                if what == PRIVATE:      # removed whole
                    private += 1
                    if start >= 0:
                        out.append(raw[start:stop])
                        start = -1
                    pos = vend
                    continue
                if what == FIXED:
                    if count is not None:        # (group lengths are not counted)
                        counts[count] = counts.get(count, 0) + 1
                    if start >= 0:
                        out.append(raw[start:stop])
                        start = -1
                    if fixed:
                        out.append(fixed)
                    pos = vend
                    continue
            vstart = pos + header
            length = vend - vstart
            if count is not None:
                counts[count] = counts.get(count, 0) + 1
            # the reference sets these top-level elements after the rules (not those in items)
            replaced = not stack and tag in _OVERRIDDEN
            if what == RECURSE:          # enter the sequence: its items come next
                if length != _UNDEFINED and vend > end or len(stack) > _MAX_DEPTH:
                    raise _Unusual
                stack.append((out, end, in_item, last, next_insert, seq_end, seq_undefined,
                              tag, vr, pos, vstart))
                seq_undefined = length == _UNDEFINED
                seq_end = end if seq_undefined else vend
                if replaced or raw[pos:vstart] != fixed:
                    if start >= 0:
                        out.append(raw[start:stop])
                        start = -1
                    if replaced:
                        out = []         # counted, then replaced
                    out.append(fixed)
                elif start < 0:          # written as it came: the run goes on
                    start = pos
                pos = stop = vstart
                entered = True
                break
            if what == REPLACED and not replaced:
                what = KEEP
            if start >= 0 and what != KEEP and what != KEEP_COUNTED and what != LOOKED_UP:
                out.append(raw[start:stop])
                start = -1
            target = [] if replaced else out     # counted, then replaced
            if length == _UNDEFINED:
                if tag == _PIXELS and not implicit:
                    vend = _skip_fragments(raw, vstart, end)
                elif vr == b"SQ" or (implicit and tag & 0x10000):
                    vend = _walk_items(run, counts if what in (DROP, EMPTY) else None, vstart,
                                       end, True)
                else:
                    raise _Unusual
            elif vend > end:
                raise _Unusual           # truncated: the reference path names the element
            elif vr == b"SQ" and what in (DROP, EMPTY):  # the reference removes private ones
                _walk_items(run, counts, vstart, vend, False)   # first, and counts them
            if not stack and tag in _LOOKED_UP:
                run.top[tag] = (tag, vr, pos, vstart, vend)
            if what == KEEP or what == KEEP_COUNTED or what == LOOKED_UP:
                if start < 0:
                    start = pos
                stop = pos = vend
                continue
            if what == PRIVATE or what == REPLACED or what == DROP:
                pass                     # removed whole, or replaced (re-inserted)
            elif what == EMPTY:
                target.append(_element(tag, vr, b"", implicit))
            elif what == UIDS:
                target.append(_uids(run, tag, vr, raw[vstart:vend], counts))
            elif what == SHIFT:          # the offset is the patient's: known at the end
                run.dates.append((target, len(target), tag, vr, raw[vstart:vend]))
                target.append(None)
            elif what == DUMMY:
                target.append(_element(tag, vr, _dummy(vr), implicit))
            else:
                raise _Unusual
            pos = vend
        else:
            if in_item:
                raise _Unusual           # no item delimiter
            if not stack:                # the dataset's end
                if start >= 0:           # (pixel data, mostly: not copied before the join)
                    out.append(memoryview(raw)[start:stop])
                for tag in inserts:
                    run.insert_at.append((len(out), tag))
                    out.append(None)
                if private:
                    counts["private"] = counts.get("private", 0) + private
                return pos
            if pos != end:
                raise _Unusual           # past the end of an item of defined length
        # Items and sequences are written with undefined lengths; those that came so are
        # copied with the run of untouched bytes around them.
        if not entered:                  # an item ended: at its delimiter, or its length
            if in_item and raw[pos:pos + 8] == _ITEM_END:
                if start < 0:
                    start = pos
                pos = stop = pos + 8
            else:
                start = _write(out, raw, start, stop, _ITEM_END)
                pos += 8 if in_item else 0
        # the sequence's next item, or its end
        if pos < seq_end:
            group, element, length = _ITEM.unpack_from(raw, pos)
            if group != 0xFFFE:
                raise _Unusual
            if element == 0xE000:
                in_item = length == _UNDEFINED
                end = seq_end if in_item else pos + 8 + length
                if end > seq_end:
                    raise _Unusual
                last, next_insert = -1, _NEVER
                if in_item:              # as it is written
                    if start < 0:
                        start = pos
                    pos = stop = pos + 8
                else:
                    start = _write(out, raw, start, stop, _ITEM_START)
                    pos += 8
                continue
            if element != 0xE0DD or not seq_undefined:
                raise _Unusual
            if raw[pos:pos + 8] == _SEQUENCE_END:
                if start < 0:
                    start = pos
                pos = stop = pos + 8
            else:
                pos += 8
                start = _write(out, raw, start, stop, _SEQUENCE_END)
        elif seq_undefined or pos != seq_end:
            raise _Unusual
        else:
            start = _write(out, raw, start, stop, _SEQUENCE_END)
        parent = out                     # back to the level that holds the sequence
        (out, end, in_item, last, next_insert, seq_end, seq_undefined, tag, vr, begin,
         vstart) = stack.pop()
        if out is not parent:            # an overridden sequence went to a discarded list
            start = -1
        if not stack and tag in _LOOKED_UP:
            run.top[tag] = (tag, vr, begin, vstart, pos)


def _write(out: list, raw: bytes, start: int, stop: int, header: bytes) -> int:
    """Copy the run of untouched bytes (if any) and write an item or sequence `header` that
    did not come as it is written: the run's new start (none)."""
    if start >= 0:
        out.append(raw[start:stop])
    out.append(header)
    return -1


def _walk_items(run: _Run, counts: dict | None, pos: int, end: int, undefined: bool) -> int:
    """Walk the items of a sequence that is skipped, removed or emptied: count the private
    elements in it into `counts` if given (the reference removes those first and counts them),
    and return the sequence's end. One loop with a stack of the enclosing items and sequences
    (a call per item would cost more than the walk), every header one dict lookup (the
    elements of a removed waveform annotation are most of a DICOM ECG): the same checks as
    `_process`."""
    raw, implicit = run.raw, run.implicit
    get, walks = run.decisions.get, run.walks.get
    counting = counts is not None
    private = 0
    stack = []         # (end, undefined, counting) of the enclosing sequences and items
    in_item = False    # in an item (elements), else in a sequence (items); they alternate
    while True:
        if in_item:
            while pos < end:             # elements skipped whole
                kind, size = walks(raw[pos:pos + 8]) or run.walk(raw[pos:pos + 8])
                if kind == _SKIP:
                    pos += size
                elif kind == _SKIP_PRIVATE:
                    private += counting
                    pos += size
                else:
                    break
            else:
                if pos > end or undefined:
                    raise _Unusual       # past the item's end, or no item delimiter
                end, undefined, counting = stack.pop()
                in_item = False
                continue
            if kind == _ITEM_DELIMITER and undefined:
                pos += 8
                end, undefined, counting = stack.pop()
                in_item = False
                continue
            if kind != _LOOK:
                raise _Unusual           # an item tag among the elements
            _, _, _, tag, vr, header, length_of, _ = \
                get(raw[pos:pos + 8]) or run.decide(raw[pos:pos + 8])
            if tag < 0:
                raise _Unusual           # a bad VR
            vstart = pos + header
            length = length_of(raw, pos)[0]
            is_private = tag & 0x10000
            if is_private and counting:
                private += 1
            if length == _UNDEFINED:
                if vr != b"SQ" and not (implicit and is_private):
                    raise _Unusual
                stack.append((end, undefined, counting))
                in_item, pos, undefined, counting = False, vstart, True, counting and not is_private
            else:
                vend = vstart + length
                if vend > end:
                    raise _Unusual
                if vr == b"SQ" and not is_private:
                    stack.append((end, undefined, counting))
                    in_item, pos, end, undefined = False, vstart, vend, False
                else:
                    pos = vend
            continue
        if pos < end:
            kind, size = walks(raw[pos:pos + 8]) or run.walk(raw[pos:pos + 8])
            if kind == _ITEM_UNDEFINED or kind == _ITEM_DEFINED:
                item_end = end if kind == _ITEM_UNDEFINED else pos + size
                if item_end > end or len(stack) > 2 * _MAX_DEPTH:
                    raise _Unusual
                stack.append((end, undefined, counting))
                in_item, pos, end, undefined = True, pos + 8, item_end, kind == _ITEM_UNDEFINED
                continue
            if kind != _SEQUENCE_DELIMITER or not undefined:
                raise _Unusual
            pos += 8
        elif undefined or pos != end:
            raise _Unusual
        if not stack:                    # the sequence's end
            if private:
                counts["private"] = counts.get("private", 0) + private
            return pos
        end, undefined, counting = stack.pop()
        in_item = True


def _uids(run: _Run, tag: int, vr: bytes, value: bytes, counts: dict) -> bytes:
    """`dicom._remap_uids`: standard UIDs kept, others keyed."""
    text = value.decode("latin-1").rstrip("\0 ")
    if tag in ref._KEEP_UIDS or not text:
        return _element(tag, vr, value, run.implicit)
    counts["U"] = counts.get("U", 0) + 1
    return _element(tag, vr, _pad(_remap(run.ps, text).encode("latin-1"), b"\0"), run.implicit)


def _remap(ps: Pseudonymizer, text: str) -> str:
    uid = ps.uid
    if "\\" not in text:
        return text if text in UID_dictionary else uid(text)
    return "\\".join(v if v in UID_dictionary else uid(v) for v in text.split("\\"))


def _shifted(shift, tag: int, vr: bytes, value: bytes, implicit: bool) -> bytes:
    """`dicom._shift_or_remove` with dates kept: every date moved by the patient's offset."""
    values = value.decode("latin-1").rstrip(" \0").split("\\")
    shifted = [ref._shift_one(v, vr.decode(), shift) for v in values if v]
    if not shifted:
        return _element(tag, vr, value, implicit)
    new = "\\".join(s for s in shifted if s).encode("latin-1")
    return _element(tag, vr, _pad(new, b" "), implicit)


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

# Pseudonymizer -> {(patient, implicit): _patient(...)}; weak, so no Pseudonymizer (and its
# UID cache) outlives its user here
_PATIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _patient(ps: Pseudonymizer, patient: str, implicit: bool) -> tuple:
    """The PatientName and PatientID elements of the patient's pseudonym, and the patient's
    date offset: the same in every file of the patient (a series has hundreds)."""
    cache = _PATIENTS.get(ps)
    if cache is None:
        cache = _PATIENTS[ps] = {}
    found = cache.get((patient, implicit))
    if found is None:
        if len(cache) >= 1024:
            cache.clear()
        found = cache[patient, implicit] = (
            _text_element(_PATIENT_NAME, "PN", ps.patient_name(patient), implicit),
            _text_element(_PATIENT_ID, "LO", ps.patient_id(patient), implicit),
            ref.dt.timedelta(days=ps.date_shift_days(patient)))
    return found


@functools.lru_cache(maxsize=64)
def _method_record(key_id: str, retain_dates: bool, retain_patient: bool,
                   implicit: bool) -> dict:
    """`dicom._record_method`, encoded: the same for every file under one key and options."""
    method = "\\".join(["megamed deid PS3.15 E.1 basic profile", f"key id {key_id}"])
    options = ["basic"] + (["dates"] if retain_dates else []) + \
        (["patient"] if retain_patient else [])
    def text(tag, vr, value):
        return _text_element(tag, vr, value, implicit)
    codes = [_ITEM_START + text(0x00080100, "SH", ref._CODES[o][0]) +
             text(0x00080102, "SH", "DCM") + text(0x00080104, "LO", ref._CODES[o][1]) +
             _ITEM_END for o in options]
    sequence = _element(0x00120064, b"SQ", b"".join(codes) + _SEQUENCE_END, implicit, _UNDEFINED)
    return {0x00120062: text(0x00120062, "CS", "YES"),
            0x00120063: text(0x00120063, "LO", method),
            0x00120064: sequence,
            0x00280303: text(0x00280303, "CS", "MODIFIED" if retain_dates else "REMOVED")}


_META_DROPPED = (0x00020000, 0x00020016, 0x00020100, 0x00020102)


def _write_meta(raw: bytes, meta: dict, sop_class: str, sop_instance: str) -> bytes:
    """`dicom._update_file_meta` and pydicom's file meta writer: the group length first."""
    new = {tag: raw[pos:end] for tag, (vr, pos, _, end) in meta.items() if tag not in _META_DROPPED}
    if 0x00020001 not in meta or meta[0x00020001][2] == meta[0x00020001][3]:
        new[0x00020001] = _element(0x00020001, b"OB", b"\x00\x01")
    new[0x00020002] = _text_element(0x00020002, _meta_vr(meta, 0x00020002), sop_class)
    new[0x00020003] = _text_element(0x00020003, _meta_vr(meta, 0x00020003), sop_instance)
    new[0x00020012] = _writer_element(0x00020012, _meta_vr(meta, 0x00020012))
    new[0x00020013] = _writer_element(0x00020013, _meta_vr(meta, 0x00020013))
    body = b"".join([new[tag] for tag in sorted(new)])
    return _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


@functools.lru_cache(maxsize=16)
def _writer_element(tag: int, vr: str) -> bytes:
    """ImplementationClassUID or ImplementationVersionName: pydicom's."""
    return _text_element(tag, vr, PYDICOM_IMPLEMENTATION_UID if tag == 0x00020012 else
                         "PYDICOM " + pydicom.__version__)


def _meta_vr(meta: dict, tag: int) -> str:
    return meta[tag][0].decode() if tag in meta else dictionary_VR(tag)
