"""Hostile input for the de-identification: corrupt, truncated and odd DICOM files, text in
other encodings, malformed WFDB headers, folders with symbolic links and PHI in file names.
Each refusal must be a DeidError naming the file and the reason and holding no original
value; nothing may crash; the fast DICOM path and the reference path must agree (a seeded
differential fuzz)."""
import io
import json
import logging
import os
import random
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, generate_uid

from megamed.data.deid import DeidError, Pseudonymizer, deidentify_dicom, deidentify_wfdb_header
from megamed.data.deid import dicom as reference
from megamed.data.deid import folder
from megamed.data.deid.dicom_fast import deidentify_dicom_bytes, fast_deidentify
from tools import deid as deid_tool

DATA = os.path.join(os.path.dirname(pydicom.__file__), "data")
TEST_FILES = os.path.join(DATA, "test_files")
CHARSETS = os.path.join(DATA, "charset_files")
KEY = b"hostile-test-key-0123456789"
PHI = ("Doe^Jane", "DOE", "Jane", "PAT-000123", "19510304", "20190105")


@pytest.fixture(scope="module")
def ps():
    return Pseudonymizer(KEY)


def _planted(syntax=None, **changes) -> bytes:
    """CT_small with planted PHI, a private tag with its creator and a nested sequence."""
    ds = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
    ds.PatientName, ds.PatientID = "Doe^Jane^Q", "PAT-000123"
    ds.PatientBirthDate, ds.StudyDate = "19510304", "20190105"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["hostile"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "Jane Doe private")
    item = Dataset()
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.PersonName = "Doe^Jane"
    ds.ReferencedImageSequence = Sequence([item])
    for k, v in changes.items():
        setattr(ds, k, v)
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if syntax == ExplicitVRBigEndian:
            pydicom.dcmwrite(buffer, ds, implicit_vr=False, little_endian=False,
                             force_encoding=True)
        else:
            ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _assert_clean_refusal(error: DeidError, name: str) -> None:
    message = str(error)
    assert name in message and ": " in message, message
    for value in PHI:
        assert value.lower() not in message.lower(), (value, message)


def _reference_out(raw: bytes, ps, options) -> bytes | None:
    try:
        ds = reference.read_dicom(io.BytesIO(raw), "f.dcm")
        ds = reference.deidentify_dicom(ds, ps, in_place=True, **options)
        return reference.write_dicom(ds, "f.dcm")
    except DeidError:
        return None


# --- DICOM: unreadable, truncated, corrupt ----------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    (b"", "empty file"),
    (b"Patient: Jane Doe, DOB 19510304\n" * 10, "not a DICOM Part 10 file"),
    (b"\0" * 128 + b"DICM", "no data elements"),
])
def test_not_dicom_is_refused_in_words(ps, raw, reason):
    with pytest.raises(DeidError, match=reason) as e:
        deidentify_dicom_bytes(raw, ps, name="in/x.dcm")
    _assert_clean_refusal(e.value, "in/x.dcm")


def test_a_bare_dataset_without_preamble_and_file_meta_is_refused(ps):
    raw = open(os.path.join(TEST_FILES, "ExplVR_LitEndNoMeta.dcm"), "rb").read()
    with pytest.raises(DeidError, match="no 128-byte preamble"):
        deidentify_dicom_bytes(raw, ps, name="bare.dcm")


def test_every_tenth_truncation_of_every_shipped_file_is_output_or_a_clean_refusal(ps):
    """No exception but DeidError; a refusal names the file. Planted PHI never leaks."""
    paths = sorted(os.path.join(TEST_FILES, n) for n in os.listdir(TEST_FILES)
                   if n.endswith(".dcm"))
    inputs = [(os.path.basename(p), open(p, "rb").read()) for p in paths]
    inputs.append(("planted.dcm", _planted()))
    refused = 0
    for name, raw in inputs:
        for k in range(10):
            cut = raw[:len(raw) * k // 10]
            try:
                out = deidentify_dicom_bytes(cut, ps, name=name, allow_burned_in=True)
            except DeidError as e:
                _assert_clean_refusal(e, name)
                refused += 1
                continue
            if name == "planted.dcm":
                assert b"Doe" not in out and b"PAT-000123" not in out
    assert refused >= 8 * len(inputs)


def test_truncation_pydicom_reads_silently_is_refused(ps):
    raw = _planted()
    pixels = raw.index(struct.pack("<HH", 0x7FE0, 0x0010))
    cases = {"inside a header": raw[:pixels + 5], "inside the pixels": raw[:pixels + 100]}
    for label, cut in cases.items():
        assert fast_deidentify(cut, ps, allow_burned_in=True) is None, label
        with pytest.raises(DeidError, match="cut.dcm: truncated") as e:
            deidentify_dicom_bytes(cut, ps, name="cut.dcm", allow_burned_in=True)
        _assert_clean_refusal(e.value, "cut.dcm")


def test_a_bit_flipped_in_a_length_field_never_crashes(ps):
    raw = _planted()
    start = raw.index(b"PN", 140)      # the PatientName's VR, then its 16-bit length
    for bit in range(16):
        bad = bytearray(raw)
        bad[start + 2 + bit // 8] ^= 1 << (bit % 8)
        try:
            out = deidentify_dicom_bytes(bytes(bad), ps, name="flip.dcm", allow_burned_in=True)
        except DeidError as e:
            _assert_clean_refusal(e, "flip.dcm")
            continue
        assert b"Doe^Jane" not in out and b"PAT-000123" not in out


def _deep(depth: int) -> bytes:
    """The planted file with ReferencedImageSequence nested `depth` levels deep, undefined
    lengths everywhere, a person's name at the bottom."""
    pn = struct.pack("<HH2sH", 0x0040, 0xA123, b"PN", 8) + b"Doe^Jane"
    seq = pn
    for _ in range(depth):
        seq = (struct.pack("<HH2sHI", 0x0008, 0x1250, b"SQ", 0, 0xFFFFFFFF)
               + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + seq
               + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    raw = _planted(ReferencedImageSequence=Sequence())
    marker = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0)
    i = raw.index(marker)
    item = (struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + seq
            + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return raw[:i] + marker[:8] + b"\xff\xff\xff\xff" + item + raw[i + len(marker):]


def test_deep_undefined_length_sequences(ps):
    raw = _deep(40)
    fast = fast_deidentify(raw, ps, allow_burned_in=True)
    assert fast is not None and b"Doe" not in fast
    expected = _reference_out(raw, ps, {"allow_burned_in": True})
    assert pydicom.dcmread(io.BytesIO(expected)) == pydicom.dcmread(io.BytesIO(fast))
    with pytest.raises(DeidError, match="deep.dcm: (corrupt|truncated)"):
        deidentify_dicom_bytes(_deep(3000), ps, name="deep.dcm", allow_burned_in=True)


# --- DICOM: syntaxes, private tags, character sets, dates, burned-in, multi-frame -------------

@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_big_endian_and_deflated_files_are_deidentified(ps, syntax):
    raw = _planted(syntax)
    out = deidentify_dicom_bytes(raw, ps, name="x.dcm", allow_burned_in=True)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.file_meta.TransferSyntaxUID == syntax
    values = " ".join(reference.original_values(ds))
    assert all(v not in values for v in ("Doe", "PAT-000123", "19510304", "20190105"))
    assert not any(e.tag.is_private for e in ds.iterall())
    assert ds.PixelData == pydicom.dcmread(io.BytesIO(raw)).PixelData


def test_private_tags_with_their_creator_are_removed_and_counted(ps):
    counts = {}
    out = deidentify_dicom_bytes(_planted(), ps, counts=counts, allow_burned_in=True)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert not any(e.tag.is_private for e in ds.iterall()) and b"ACME" not in out
    assert counts["private"] >= 2               # the creator and its element


@pytest.mark.parametrize("name", ["chrFren.dcm", "chrX1.dcm", "chrJapMulti.dcm", "chrH31.dcm",
                                  "chrSQEncoding.dcm"])
def test_person_names_in_other_character_sets(ps, name):
    path = os.path.join(CHARSETS, name)
    original = pydicom.dcmread(path)
    components = [c for e in original.iterall() if e.VR == "PN" and e.value
                  for group in str(e.value).split("=") for c in group.split("^") if len(c) > 1]
    out = deidentify_dicom_bytes(open(path, "rb").read(), ps, name=name, allow_burned_in=True)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert str(ds.PatientName).startswith("ANON^") and str(ds.PatientName).isascii()
    assert ds.get("SpecificCharacterSet") == original.get("SpecificCharacterSet")
    ds.decode()                                  # every value decodes in the file's charset
    values = list(reference.original_values(ds))
    assert components and not [c for c in components if any(c in v for v in values)]
    for c in components:
        for encoding in ("utf-8", "latin-1", "iso2022_jp"):
            try:
                assert c.encode(encoding) not in out
            except UnicodeEncodeError:
                pass


def test_the_patient_name_inside_descriptors_is_removed(ps):
    ds = pydicom.dcmread(io.BytesIO(_planted()))
    ds.StudyDescription = "CT chest for Jane Doe"
    ds.ImageComments = "pt DOE^JANE id PAT-000123"
    request = Dataset()
    request.RequestedProcedureDescription = "Doe Jane follow-up"
    ds.RequestAttributesSequence = Sequence([request])
    other = Dataset()
    other.PatientID = "OTHER-98765"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.ProtocolName = "OTHER-98765 protocol"
    for options in ({}, {"clean_descriptors": True}):
        out = deidentify_dicom(ds, ps, allow_burned_in=True, **options)
        values = " ".join(reference.original_values(out)).upper()
        for planted in ("DOE", "JANE", "PAT-000123", "OTHER-98765"):
            assert planted not in values, (options, planted)
        assert "OtherPatientIDsSequence" not in out


def test_partial_and_range_dates_keep_their_shape(ps):
    ds = pydicom.dcmread(io.BytesIO(_planted()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.StudyDate, ds.SeriesDate, ds.AcquisitionDate = "20190304", "2019", "201903"
        ds.ContentDate = "20190304-20190310"
        ds.AcquisitionDateTime = "20190304101010.000+0100"
    out = deidentify_dicom(ds, ps, allow_burned_in=True)
    shift = reference.dt.timedelta(days=ps.date_shift_days("PAT-000123"))
    day = reference.dt.date(2019, 3, 4)
    assert out.StudyDate == (day + shift).strftime("%Y%m%d")
    assert out.SeriesDate == (reference.dt.date(2019, 1, 1) + shift).strftime("%Y")
    assert out.AcquisitionDate == (reference.dt.date(2019, 3, 1) + shift).strftime("%Y%m")
    assert out.ContentDate == "-".join((d + shift).strftime("%Y%m%d")
                                       for d in (day, reference.dt.date(2019, 3, 10)))
    assert out.AcquisitionDateTime == (day + shift).strftime("%Y%m%d")   # no time of day


@pytest.mark.parametrize("modality", ["US", "SC", "XC", "OT"])
def test_burned_in_risk_is_refused_naming_the_file(ps, modality):
    raw = _planted(Modality=modality)
    for data in (raw, _planted(BurnedInAnnotation="YES")):
        with pytest.raises(DeidError, match="burned.in|Burned In") as e:
            deidentify_dicom_bytes(data, ps, name=f"scan_{modality}.dcm")
        _assert_clean_refusal(e.value, f"scan_{modality}.dcm")
    assert deidentify_dicom_bytes(_planted(Modality=modality, BurnedInAnnotation="NO"), ps)


def test_multi_frame_pixels_untouched(ps):
    path = os.path.join(TEST_FILES, "SC_rgb_rle_2frame.dcm")
    out = pydicom.dcmread(io.BytesIO(deidentify_dicom_bytes(
        open(path, "rb").read(), ps, allow_burned_in=True)))
    original = pydicom.dcmread(path)
    assert out.NumberOfFrames == original.NumberOfFrames == 2
    assert out.PixelData == original.PixelData


def test_pydicom_warnings_quoting_values_are_not_shown(ps, caplog):
    ds = pydicom.dcmread(io.BytesIO(_planted()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.StudyDate = "19510304x"               # an invalid DA: pydicom quotes it
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer)
    caplog.clear()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with caplog.at_level(logging.DEBUG):
            deidentify_dicom_bytes(buffer.getvalue(), ps, clean_descriptors=True,
                                   allow_burned_in=True)
    seen = " ".join([str(w.message) for w in shown] + [r.getMessage() for r in caplog.records])
    assert "19510304" not in seen


# --- DICOM: the fast path against the reference path ---------------------------------------

def _mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    pos = rng.randrange(132, len(data))
    kind = rng.randrange(5)
    if kind == 0:
        data[pos] ^= 1 << rng.randrange(8)
    elif kind == 1:
        data[pos] = rng.randrange(256)
    elif kind == 2:
        del data[pos:pos + rng.randrange(1, 16)]
    elif kind == 3:
        data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    else:                                        # a length field after a VR
        i = data.find(rng.choice([b"PN", b"SQ", b"LO", b"UI", b"DA", b"OB"]), pos)
        if i > 0:
            data[i + 2 + rng.randrange(2)] ^= 1 << rng.randrange(8)
    return bytes(data)


def test_differential_fuzz_fast_and_reference_paths_agree(ps):
    """Random mutations of real files (fixed seed): the fast path gives the reference
    output element for element, or declines (the reference decides); deidentify_dicom_bytes
    gives output or a DeidError naming the file, never another exception."""
    seeds = [_planted()] + [open(os.path.join(TEST_FILES, n), "rb").read() for n in
                            ("MR_small_implicit.dcm", "rtplan.dcm", "nested_priv_SQ.dcm")]
    rng = random.Random(11)
    compared = 0
    for _ in range(160):
        seed = rng.randrange(len(seeds))
        raw = _mutate(rng, seeds[seed])
        options = rng.choice([{"allow_burned_in": True}, {},
                              {"allow_burned_in": True, "retain_dates": False}])
        fast = fast_deidentify(raw, ps, **options)
        try:
            out = deidentify_dicom_bytes(raw, ps, name="fuzz.dcm", **options)
            if seed == 0:                        # the planted file: nothing survives
                assert not any(p in out for p in (b"Doe", b"PAT-000123", b"19510304"))
        except DeidError as e:
            assert "fuzz.dcm" in str(e)
        if fast is None:
            continue
        expected = _reference_out(raw, ps, options)
        assert expected is not None, "the fast path wrote what the reference refuses"
        a, b = pydicom.dcmread(io.BytesIO(expected)), pydicom.dcmread(io.BytesIO(fast))
        assert a == b and a.file_meta == b.file_meta
        compared += 1
    assert compared >= 20


# --- text and WFDB -------------------------------------------------------------------------

NOTE = "Seen by Dr. Hildegard Pfeiffer on 3/4/2019.\r\nCall 555-867-5309.\r\nStable.\r\n"


def test_text_encodings(ps):
    text, enc = folder.decode_text(b"\xef\xbb\xbf" + NOTE.encode(), "a.txt")
    assert enc == "utf-8-sig" and text == NOTE
    text, enc = folder.decode_text(NOTE.encode("utf-16"), "b.txt")
    assert text == NOTE and NOTE.encode("utf-16") == text.encode(enc)
    with pytest.raises(DeidError, match=r"c.txt: not UTF-8 text \(invalid byte at offset 12;"):
        folder.decode_text("Patient: Ren\xe9e Dubois".encode("cp1252"), "c.txt")
    with pytest.raises(DeidError, match="d.txt: binary content"):
        folder.decode_text(b"\0\1\2\x7f" * 64, "d.txt")
    with pytest.raises(DeidError, match="d.txt: not UTF-8"):
        folder.decode_text(bytes(range(256)) * 4, "d.txt")
    assert folder.decode_text(b"", "e.txt") == ("", "utf-8")


def test_crlf_and_text_outside_phi_are_kept_byte_for_byte(ps):
    out = folder.deidentify_long_text(NOTE, ps, {})
    assert "Pfeiffer" not in out and "867-5309" not in out
    assert out.count("\r\n") == 3 and out.endswith("\r\nStable.\r\n")


def test_long_text_in_pieces_moves_the_bar_and_misses_nothing(ps, monkeypatch):
    monkeypatch.setattr(folder, "CHUNK_CHARS", 4000)

    class Bar:
        updates = []

        def update(self, n):
            self.updates.append(n)
    line = "Pt Zbigniew Kaczmarek seen 4/5/2020, call 555-867-5309. " * 40
    text = (line + "\n") * 30 + line * 5           # lines, then one long line with no newline
    bar = Bar()
    out = folder.deidentify_long_text(text, ps, {}, bar)
    assert len(bar.updates) >= 10 and sum(bar.updates) == len(text.encode())
    assert "Kaczmarek" not in out and "867-5309" not in out and out.count("\n") == 30
    pieces = list(folder._pieces(text, 4000))
    assert "".join(pieces) == text and max(map(len, pieces)) <= 4000
    short = "Dr. Pfeiffer saw him."
    assert folder.deidentify_long_text(short, ps, {}) == \
        folder.deidentify_text(short, ps)            # small texts: exactly one call


HEADER = ("rec_{n} 2 500 5000 10:11:12 04/03/2019\r\n"
          "rec_{n}.dat 16 200/mV 16 0 0 0 0 I\r\n"
          "rec_{n}.dat 16 200/mV 16 0 0 0 0 II\r\n"
          "# Patient: Hildegard Pfeiffer, age 93, admitted 3/4/2019\r\n")


def test_wfdb_headers(ps):
    counts = {}
    out = deidentify_wfdb_header(HEADER.format(n=1), ps, counts=counts)
    assert "Pfeiffer" not in out and "93" not in out and "3/4/2019" not in out
    assert "04/03/2019" not in out and counts["DATE"] >= 2 and out.count("\r\n") == 4
    assert out.splitlines()[1:3] == HEADER.format(n=1).splitlines()[1:3]
    plain = "100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n" \
            "100.dat 212 200 11 1024 1011 20052 0 V5\n"
    assert deidentify_wfdb_header(plain, ps) == plain             # no comments: unchanged
    for bad in ("# only a comment\n", "rec x 500\n", "rec 3 500\nrec.dat 16\n"):
        with pytest.raises(DeidError, match="s.hea: malformed WFDB header"):
            deidentify_wfdb_header(bad, ps, name="s.hea")


# --- the folder tool -------------------------------------------------------------------------

def _tree(tmp_path):
    src = tmp_path / "export"
    (src / "Smith_John_19510304" / "ct").mkdir(parents=True)
    (src / "Smith_John_19510304" / "ct" / "Smith_John_19510304.dcm").write_bytes(_planted())
    (src / "Smith_John_19510304" / "note.txt").write_bytes(NOTE.encode())
    (src / "Smith_John_19510304" / "cp1252.txt").write_bytes("Ren\xe9e Dubois".encode("cp1252"))
    (src / "Smith_John_19510304" / "garbage.dcm").write_bytes(b"Jane Doe 19510304")
    (src / "Smith_John_19510304" / "us.dcm").write_bytes(_planted(Modality="US"))
    (src / "Smith_John_19510304" / "bad.hea").write_text("rec 3 500\n")
    (src / "Smith_John_19510304" / "Pfeiffer.hea").write_text(HEADER.format(n=1).replace(
        "rec_1", "Pfeiffer"))
    (src / "Smith_John_19510304" / "Pfeiffer.dat").write_bytes(b"\0\1" * 10)
    (src / "empty.txt").write_bytes(b"")
    outside = tmp_path / "outside.txt"
    outside.write_text("Secret note about Jane Doe")
    (src / "link.txt").symlink_to(outside)
    (src / "link_dir").symlink_to(tmp_path, target_is_directory=True)
    key = tmp_path / "key"
    key.write_bytes(KEY)
    return src, key


def _all_output(dst) -> str:
    names, data = [], []
    for root, dirs, files in os.walk(dst):
        names += dirs + files
        for f in files:
            data.append(open(os.path.join(root, f), "rb").read().decode("latin-1"))
    return " ".join(names), " ".join(data)


def test_folder_tool_on_a_hostile_tree(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MEGAMED_DEID_KEY_FILE", raising=False)
    src, key = _tree(tmp_path)
    dst = src / "deid"                        # the output inside the input
    args = [str(src), str(dst), "--quiet", "--key-file", str(key), "--pseudonymize-file-names"]
    assert deid_tool.main(args) == 1
    captured = capsys.readouterr()
    report = json.loads((dst / folder.REPORT).read_text())
    names, data = _all_output(dst)
    for planted in ("Smith", "John", "19510304", "Pfeiffer", "Jane", "Doe", "Secret"):
        assert planted not in names, planted
        assert planted not in captured.err + captured.out + json.dumps(report), planted
    assert "Pfeiffer" not in data and "Secret" not in data and "PAT-000123" not in data
    reasons = {r["file"].rsplit("/", 1)[-1]: r["reason"] for r in report["refused"]}
    assert set(reasons) == {"cp1252.txt", "garbage.dcm", "us.dcm", "bad.hea", "link.txt",
                            "link_dir"}
    assert "not UTF-8" in reasons["cp1252.txt"] and "not a DICOM" in reasons["garbage.dcm"]
    assert "symbolic link" in reasons["link.txt"] and "US" in reasons["us.dcm"]
    assert report["files"]["refused"] == 6 and report["files"]["dicom"] == 1
    assert report["files"]["text"] == 2 and report["files"]["wfdb_header"] == 1
    assert captured.err.count("refused: ") == 6
    for entry in report["refused"]:                  # every reason names its file
        assert entry["reason"].startswith(entry["file"] + ": "), entry
    # the WFDB pair keeps its link under the new names; CRLF kept in the note
    (hea,) = [p for p in dst.rglob("*.hea")]
    header = hea.read_bytes().decode()
    assert hea.with_suffix(".dat").exists() and hea.stem + ".dat" in header
    assert header.startswith(hea.stem + " 2 500 5000 10:11:12\r\n")
    (note,) = list(dst.rglob("note.txt"))
    assert note.read_bytes().count(b"\r\n") == 3
    assert not list(dst.rglob("*" + folder.PARTIAL)) and not (dst / "deid").exists()
    # a re-run skips finished files and redoes a half-written one
    note.unlink()
    note.with_name(note.name + folder.PARTIAL).write_bytes(b"half")
    assert deid_tool.main(args) == 1
    report = json.loads((dst / folder.REPORT).read_text())
    assert report["files"]["skipped (already done)"] == 4      # all but the half-written one
    assert note.read_bytes().count(b"\r\n") == 3 and not list(dst.rglob("*.partial"))


def _regular_files(root) -> set:
    """Relative paths of the regular files under root (symbolic links not followed)."""
    out = set()
    for folder_path, _, files in os.walk(root):
        for f in files:
            p = os.path.join(folder_path, f)
            if not os.path.islink(p):
                out.add(os.path.relpath(p, root))
    return out


def test_folder_tool_keeps_names_by_default_and_counts_those_that_may_identify(
        tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MEGAMED_DEID_KEY_FILE", raising=False)
    src, key = _tree(tmp_path)
    (src / "rtplan.dcm").write_bytes(_planted())
    dst = tmp_path / "out"
    assert deid_tool.main([str(src), str(dst), "--quiet", "--key-file", str(key)]) == 1
    err = capsys.readouterr().err
    report = json.loads((dst / folder.REPORT).read_text())
    inputs = _regular_files(src)
    refused = {r["file"] for r in report["refused"]}
    written = _regular_files(dst) - {folder.REPORT}
    assert written == inputs - refused            # every output at its input's relative path
    assert "rtplan.dcm" in written and "Smith_John_19510304/ct/Smith_John_19510304.dcm" in written
    may_identify = [p for p in inputs
                    if str(folder.safe_path(Path(p), Pseudonymizer(KEY))) != p]
    assert report["names_that_may_identify"] == len(may_identify) >= 9
    assert "--pseudonymize-file-names" in err


def test_folder_tool_usage_errors_exit_2_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MEGAMED_DEID_KEY_FILE", raising=False)
    src, key = _tree(tmp_path)
    for args in ([str(src), str(tmp_path / "out")],                   # no key
                 [str(src), str(src), "--key-file", str(key)],        # output is the input
                 [str(src), str(tmp_path), "--key-file", str(key)],   # output holds the input
                 [str(tmp_path / "nope"), str(tmp_path / "o"), "--key-file", str(key)]):
        assert deid_tool.main(args + ["--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("deid: ") and err.count("\n") == 1, err


def test_safe_names_are_keyed_and_keep_harmless_names(ps):
    assert folder.safe_name("report.txt", ps) == "report.txt"
    assert folder.safe_name("IM-0001-0001.dcm", ps) == "IM-0001-0001.dcm"
    renamed = folder.safe_name("Smith_John_19510304.dcm", ps)
    assert renamed.endswith(".dcm") and renamed.count("_") == 2
    assert not any(p in renamed for p in ("Smith", "John", "1951"))
    assert renamed == folder.safe_name("Smith_John_19510304.dcm", Pseudonymizer(KEY))
    assert renamed != folder.safe_name("Smith_John_19510304.dcm", Pseudonymizer(KEY + b"x"))
