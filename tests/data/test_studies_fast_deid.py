"""Study reading with DICOM waveform headers de-identified by the fast path (bytes to bytes,
then parsed once by pydicom) gives the same shard members and error records as the reference
path (pydicom read, deidentify_dicom), on the demo corpus with its bad inputs, a waveform the
fast path declines (big endian) and one the de-identification refuses (Modality OT)."""
import shutil

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian

from megamed.data import demo, studies
from megamed.data.preprocess import preset
from megamed.data.studies import StudyReader, list_studies

KEY = b"test-key-0123456789abcdef-studies"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    corpus = demo.build_raw(root, 2, ct_slices=2, kinds=("ecg_dicom", "ct_ecg"), bad_inputs=True)
    source = demo.test_files_dir() / "waveform_ecg.dcm"
    ds = pydicom.dcmread(source)
    ds.Modality = "OT"
    ds.save_as(root / "study0000" / "ecg_ot", enforce_file_format=True)
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(root / "study0001" / "ecg_big_endian", ds, implicit_vr=False,
                     little_endian=False, force_encoding=True)
    shutil.copy(source, root / "study0001" / "ecg_second")
    return corpus.raw


def _read_all(raw) -> list:
    reader = StudyReader(raw, KEY, preset("demo"))
    return [(r.key, r.members, r.errors) for r in map(reader, list_studies(raw))]


def test_fast_waveform_headers_give_the_reference_members_and_errors(raw, monkeypatch):
    fast, taken = studies.fast_deidentify, []

    def counted(*args, **kwargs):
        out = fast(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(studies, "fast_deidentify", counted)
    with_fast = _read_all(raw)
    monkeypatch.setattr(studies, "fast_deidentify", lambda *args, **kwargs: None)
    reference = _read_all(raw)
    assert taken.count(True) >= 3 and taken.count(False) >= 2   # both paths were exercised
    assert [r[0] for r in with_fast] == [r[0] for r in reference]
    for (key, members, errors), (_, ref_members, ref_errors) in zip(with_fast, reference):
        assert members == ref_members, key
        assert errors == ref_errors, key
    assert sum(b"ecg.npy" in m or "ecg.npy" in m for _, m, _ in with_fast) >= 2
    assert any("Modality OT" in e["reason"] or "OT" in e["reason"] for _, _, errs in with_fast
               for e in errs)
