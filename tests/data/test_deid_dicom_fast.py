"""The DICOM fast path (bytes to bytes) against the reference path (pydicom read,
deidentify_dicom, save_as): the same elements, file meta, preamble and action counts, read
back with pydicom, on every shipped pydicom file it takes; the reference path on the rest."""
import copy
import glob
import io
import os

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from megamed.data.deid import DeidError, Pseudonymizer, deidentify_dicom_file
from megamed.data.deid import dicom as reference
from megamed.data.deid.dicom_fast import deidentify_dicom_bytes, fast_deidentify

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
KEY = b"test-key-0123456789abcdef"
OPTIONS = [{"allow_burned_in": True}, {},
           {"allow_burned_in": True, "retain_dates": False,
            "retain_patient_characteristics": True}]


def _reference(raw: bytes, ps, options) -> tuple[bytes | None, dict]:
    counts = {}
    try:
        ds = reference.read_dicom(io.BytesIO(raw), "file.dcm")
        ds = reference.deidentify_dicom(ds, ps, in_place=True, counts=counts, **options)
        return reference.write_dicom(ds, "file.dcm"), counts
    except DeidError:
        return None, counts


def _assert_same(expected: bytes, got: bytes, label) -> None:
    a, b = pydicom.dcmread(io.BytesIO(expected)), pydicom.dcmread(io.BytesIO(got))
    assert a.preamble == b.preamble, label
    assert a.file_meta == b.file_meta, label
    assert len(a) == len(b) and a == b, \
        (label, [str(e.tag) for e in a if e.tag not in b or b[e.tag] != e] +
         [str(e.tag) for e in b if e.tag not in a])
    # the same value types, not just equal-comparing ones
    assert [(e.tag, e.VR, e.VM) for e in a.iterall()] == [(e.tag, e.VR, e.VM) for e in b.iterall()]


@pytest.mark.parametrize("options", OPTIONS, ids=["burned-ok", "defaults", "no-dates-patient"])
def test_fast_path_gives_the_reference_elements_on_every_shipped_file(options):
    ps = Pseudonymizer(KEY)
    fast = 0
    for path in sorted(glob.glob(os.path.join(TEST_FILES, "*.dcm"))):
        raw = open(path, "rb").read()
        expected, ref_counts = _reference(raw, ps, options)
        counts = {}
        got = fast_deidentify(raw, ps, counts=counts, **options)
        if got is None:        # the fast path declined: the caller takes the reference path
            assert counts == {}
            continue
        name = os.path.basename(path)
        assert expected is not None, f"{name}: the reference refuses what the fast path wrote"
        _assert_same(expected, got, name)
        assert counts == ref_counts, name
        fast += 1
    assert fast >= (25 if options else 20)   # explicit and implicit VR files take it


def _series_file(i: int, syntax) -> bytes:
    """CT_small with PHI, dates, a private tag and a nested sequence with a private element."""
    ds = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
    ds.PatientID, ds.PatientName = "PAT-000123", "Doe^Jane^Q"
    ds.PatientBirthDate, ds.StudyDate, ds.SeriesDate = "19510304", "20190105", "20190105\\20190106"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(i)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ref.add_new(0x00091010, "LO", "private secret Jane Doe")
    # set again by the reference at the top level only: in an item, the profile's action
    ref.PatientName, ref.PatientID, ref.PatientIdentityRemoved = "Doe^Jane^Q", "PAT-000123", "NO"
    inner = Dataset()
    inner.PersonName = "Kildare^James"
    inner.InstanceCreationDate = "20190107"
    ref.add_new(0x00081250, "SQ", Sequence([inner]))          # Related Series Sequence
    ds.ReferencedImageSequence = Sequence([ref])
    ds.add_new(0x00291010, "LO", "vendor secret")
    ds.OtherPatientIDsSequence = Sequence([copy.deepcopy(inner)])   # removed, as a whole
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True,
               enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_fast_path_on_planted_phi_in_nested_sequences(syntax):
    ps = Pseudonymizer(KEY)
    for options in OPTIONS:
        raw = _series_file(1, syntax)
        expected, ref_counts = _reference(raw, ps, {**options, "allow_burned_in": True})
        counts = {}
        got = fast_deidentify(raw, ps, counts=counts, **{**options, "allow_burned_in": True})
        assert got is not None
        _assert_same(expected, got, syntax)
        assert counts == ref_counts and counts["private"] >= 2
        for planted in (b"Doe^Jane", b"PAT-000123", b"Kildare", b"secret", b"20190105"):
            assert planted not in got


def test_declined_inputs_take_the_reference_path(tmp_path):
    ps = Pseudonymizer(KEY)
    big_endian = open(os.path.join(TEST_FILES, "MR_small_bigendian.dcm"), "rb").read()
    assert fast_deidentify(big_endian, ps) is None
    assert fast_deidentify(_series_file(2, ExplicitVRLittleEndian), ps,
                           clean_descriptors=True, allow_burned_in=True) is None
    expected, _ = _reference(big_endian, ps, {})
    _assert_same(expected, deidentify_dicom_bytes(big_endian, ps), "big endian")
    # refusals and corrupt files: the reference path's DeidError, naming the file
    us = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
    us.Modality = "US"
    us.save_as(tmp_path / "us.dcm")
    with pytest.raises(DeidError, match="us.dcm.*US"):
        deidentify_dicom_file(tmp_path / "us.dcm", tmp_path / "out.dcm", ps)
    raw = open(os.path.join(TEST_FILES, "CT_small.dcm"), "rb").read()
    (tmp_path / "cut.dcm").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(DeidError, match="cut.dcm"):
        deidentify_dicom_file(tmp_path / "cut.dcm", tmp_path / "out.dcm", ps)


def test_file_tool_path_writes_the_fast_output(tmp_path):
    ps = Pseudonymizer(KEY)
    src = os.path.join(TEST_FILES, "MR_small.dcm")
    counts = {}
    assert deidentify_dicom_file(src, tmp_path / "out.dcm", ps, counts=counts) is None
    assert (tmp_path / "out.dcm").read_bytes() == fast_deidentify(open(src, "rb").read(), ps)
    assert counts["U"] >= 3
    twice = deidentify_dicom_bytes(open(src, "rb").read(), Pseudonymizer(KEY))
    assert twice == (tmp_path / "out.dcm").read_bytes()      # same key, same bytes
