"""DICOM header de-identification against pydicom's own shipped files (globbed locally: no
download): links kept, PHI gone, pixels untouched, refusals name the file."""
import copy
import glob
import io
import os
import re

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary, generate_uid

from megamed.data.deid import DeidError, Pseudonymizer, deidentify_dicom, deidentify_dicom_file
from megamed.data.deid.annex_e import ACTIONS

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
KEY = b"test-key-0123456789abcdef"


def _shipped(name):
    path = os.path.join(TEST_FILES, name)
    if not os.path.exists(path):
        pytest.skip(f"pydicom does not ship {name} in this version")
    return pydicom.dcmread(path)


def _series(n=3, patient="PAT-000123", name="Doe^Jane^Q"):
    """A multi-file series: CT_small copies that share study, series and frame of reference,
    each a new instance, with PHI and a private tag planted in a nested sequence."""
    base = _shipped("CT_small.dcm")
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.PatientID, ds.PatientName = patient, name
        ds.PatientBirthDate, ds.StudyDate, ds.SeriesDate = "19510304", "20190105", "20190105"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstitutionName, ds.ReferringPhysicianName = "St Elsewhere Clinic", "House^Gregory"
        ds.OperatorsName, ds.AccessionNumber = "Kildare^James", "ACC7781234"
        ds.OtherPatientIDs = "SSN-078-05-1120"
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = files[-1].SOPInstanceUID if files else ds.SOPInstanceUID
        ref.add_new(0x00091010, "LO", "private secret Jane Doe")
        ds.ReferencedImageSequence = Sequence([ref])
        ds.add_new(0x00291010, "LO", "vendor secret")
        files.append(ds)
    return files


def test_series_links_survive_and_phi_does_not():
    originals = _series()
    before = [copy.deepcopy(ds) for ds in originals]
    out = [deidentify_dicom(ds, Pseudonymizer(KEY)) for ds in originals]
    # one study, one series, one frame of reference: the same new UIDs in every file
    assert len({ds.StudyInstanceUID for ds in out}) == 1
    assert len({ds.SeriesInstanceUID for ds in out}) == 1
    assert len({ds.SOPInstanceUID for ds in out}) == len(out)
    for old, new in zip(before, out):
        assert new.StudyInstanceUID != old.StudyInstanceUID
        assert re.fullmatch(r"2\.25\.[1-9]\d*", new.SOPInstanceUID) and len(new.SOPInstanceUID) <= 64
        assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
        assert new.SOPClassUID == old.SOPClassUID            # standard UIDs are not remapped
        assert new.file_meta.TransferSyntaxUID == old.file_meta.TransferSyntaxUID
        assert new.PixelData == old.PixelData                # pixels untouched
    # the reference inside the sequence points at the remapped instance of the previous file
    assert out[1].ReferencedImageSequence[0].ReferencedSOPInstanceUID == out[0].SOPInstanceUID
    # PHI: no original person name, id, date or institution survives anywhere in the file
    planted = ["Doe", "Jane", "PAT-000123", "19510304", "20190105", "Elsewhere", "House",
               "Gregory", "Kildare", "ACC7781234", "078-05-1120", "secret",
               before[0].StudyInstanceUID, before[0].SOPInstanceUID, before[0].StudyTime]
    for ds in out:
        blob = _bytes(ds)
        for value in planted:
            assert value.encode() not in blob, value
        assert not any(elem.tag.is_private for elem in ds.iterall())
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


def test_every_listed_attribute_gets_its_action():
    """Walk Annex E: plant a value in each listed attribute whose VR is a string, check that
    every planted value is gone after de-identification, inside a sequence item too."""
    ds, planted = Dataset(), {}
    item = Dataset()
    for i, (tag, action) in enumerate(sorted(ACTIONS.items())):
        if tag >> 16 in (0x0000, 0x0002):    # command and file-meta groups: not in a data set
            continue
        try:
            vr = pydicom.datadict.dictionary_VR(tag)
        except KeyError:
            continue
        if vr not in ("LO", "SH", "PN", "LT", "ST", "UT", "CS", "AE", "DA", "DT", "TM", "UI"):
            continue
        value = {"DA": "19731106", "DT": "19731106101010", "TM": "101010",
                 "UI": f"1.2.826.0.1.3680043.99.{i}"}.get(vr, f"PHIVAL{i:04d}")
        (item if i % 3 == 0 else ds).add_new(tag, vr, value)
        planted[tag] = value
    ds.PatientID = "PATIENT-9"
    ds.ContentSequence = Sequence([item])
    out = _bytes(deidentify_dicom(ds, Pseudonymizer(KEY)))
    for tag, value in planted.items():
        assert value.encode() not in out, f"{pydicom.tag.Tag(tag)} {ACTIONS[tag]} kept {value}"
    assert len(planted) > 200


def test_same_key_same_bytes_other_key_other_pseudonyms():
    a, b = _series(1)[0], _series(1)[0]
    b.SOPInstanceUID = a.SOPInstanceUID
    b.StudyInstanceUID, b.SeriesInstanceUID = a.StudyInstanceUID, a.SeriesInstanceUID
    b.FrameOfReferenceUID = a.FrameOfReferenceUID
    b.file_meta.MediaStorageSOPInstanceUID = a.SOPInstanceUID
    b.ReferencedImageSequence[0].ReferencedSOPInstanceUID = a.SOPInstanceUID
    c = copy.deepcopy(a)
    assert _bytes(deidentify_dicom(a, Pseudonymizer(KEY))) == \
        _bytes(deidentify_dicom(b, Pseudonymizer(KEY)))
    other = deidentify_dicom(c, Pseudonymizer(b"another-key-0123456789"))
    assert other.PatientID != a.PatientID and other.StudyInstanceUID != a.StudyInstanceUID


def test_dates_shift_by_one_nonzero_offset_per_patient():
    import datetime as dt
    ps = Pseudonymizer(KEY)
    p1 = _series(2, patient="P1")
    p2 = _series(1, patient="P2")
    p1[1].StudyDate = "20190301"
    shifts, outs = [], []
    for ds in p1 + p2:
        old = dt.datetime.strptime(ds.StudyDate, "%Y%m%d")
        outs.append(deidentify_dicom(ds, ps))
        new = dt.datetime.strptime(outs[-1].StudyDate, "%Y%m%d")
        shifts.append((new - old).days)
    assert shifts[0] == shifts[1] != 0          # the same patient: the same offset
    assert shifts[2] != 0
    assert outs[0].PatientID == outs[1].PatientID != outs[2].PatientID
    assert outs[0].PatientName == outs[1].PatientName != outs[2].PatientName


def test_burned_in_and_risky_modalities_are_refused_with_the_file_name(tmp_path):
    ds = _series(1)[0]
    ds.BurnedInAnnotation = "YES"
    path = tmp_path / "burned.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DeidError, match="burned.dcm.*Burned In Annotation"):
        deidentify_dicom_file(path, None, Pseudonymizer(KEY))
    deidentify_dicom_file(path, None, Pseudonymizer(KEY), allow_burned_in=True)
    us = _series(1)[0]
    us.Modality = "US"
    us.save_as(tmp_path / "us.dcm", enforce_file_format=True)
    with pytest.raises(DeidError, match="us.dcm.*US"):
        deidentify_dicom_file(tmp_path / "us.dcm", None, Pseudonymizer(KEY))
    us.BurnedInAnnotation = "NO"
    deidentify_dicom(us, Pseudonymizer(KEY))


def test_corrupt_dicom_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "corrupt_scan.dcm"
    with open(os.path.join(TEST_FILES, "CT_small.dcm"), "rb") as f:
        bad.write_bytes(f.read()[:1500])             # cut inside an element
    with pytest.raises(DeidError, match="corrupt_scan.dcm"):
        deidentify_dicom_file(bad, tmp_path / "out.dcm", Pseudonymizer(KEY))
    junk = tmp_path / "notdicom.dcm"
    junk.write_bytes(b"hello")
    with pytest.raises(DeidError, match="notdicom.dcm"):
        deidentify_dicom_file(junk, None, Pseudonymizer(KEY))


def test_every_shipped_file_is_deidentified_or_refused():
    """pydicom's own files: each either comes out with no original patient/person/UID value,
    or is refused with a DeidError (burned-in risk, or a file pydicom cannot parse)."""
    ps = Pseudonymizer(KEY)
    done = 0
    for path in sorted(glob.glob(os.path.join(TEST_FILES, "*.dcm"))):
        try:
            ds = pydicom.dcmread(path)
            phi = [str(e.value) for e in ds.iterall()
                   if e.VR in ("PN",) and str(e.value).strip()] + \
                  [str(e.value) for e in ds.iterall() if e.VR == "UI" and e.value and
                   str(e.value) not in UID_dictionary and len(str(e.value)) > 10]
            ds.PatientID  # noqa: B018  (touch: some files raise here)
        except (InvalidDicomError, AttributeError, ValueError, OSError):
            continue   # pydicom cannot read it, or it has no PatientID: not ours to judge
        try:
            out = _bytes(deidentify_dicom(ds, ps))
        except DeidError as e:
            assert os.path.basename(path) in str(e) or "in memory" in str(e)
            continue
        for value in phi:
            assert value.encode() not in out, (os.path.basename(path), value)
        done += 1
    assert done >= 20


def test_waveform_file_goes_through_the_same_path():
    ds = _shipped("waveform_ecg.dcm")
    waveform = ds.WaveformSequence[0].WaveformData
    name = str(ds.PatientName)
    out = deidentify_dicom(ds, Pseudonymizer(KEY))
    assert out.WaveformSequence[0].WaveformData == waveform
    assert name.encode() not in _bytes(out)


def _bytes(ds) -> bytes:
    buf = io.BytesIO()
    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        ds.save_as(buf)
    else:
        pydicom.filewriter.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def test_clean_descriptors_and_removed_dates_options():
    ds = _series(1)[0]
    ds.SeriesDescription = "CT chest for Jolene Vasquez-Oduya"
    ds.StudyDescription = "Chest CT 3/4/2019"
    kept = deidentify_dicom(copy.deepcopy(ds), Pseudonymizer(KEY), clean_descriptors=True)
    assert kept.SeriesDescription.startswith("CT chest for ") and "Vasquez" not in kept.SeriesDescription
    assert kept.StudyDescription.startswith("Chest CT ") and "3/4" not in kept.StudyDescription
    assert [c.CodeValue for c in kept.DeidentificationMethodCodeSequence] == \
        ["113100", "113107", "113105"]
    basic = deidentify_dicom(copy.deepcopy(ds), Pseudonymizer(KEY), retain_dates=False)
    assert "SeriesDescription" not in basic and basic.get("StudyDate", "") == ""
    assert basic.LongitudinalTemporalInformationModified == "REMOVED"


def test_input_is_left_alone_and_repeated_calls_agree():
    ds = _series(1)[0]
    before = _bytes(ds)
    first = _bytes(deidentify_dicom(ds, Pseudonymizer(KEY)))
    second = _bytes(deidentify_dicom(ds, Pseudonymizer(KEY)))
    assert _bytes(ds) == before and first == second != before
