"""A small raw corpus in the `make_shards` layout, built in about a second from the real DICOM
files that ship inside pydicom (CT_small, MR_small, MR_small_RLE and the 12-lead ECG
waveform_ecg.dcm), plus generated reports, WFDB and .npy waveforms. Every study carries
planted PHI (names, MRNs, dates of birth, phone numbers, addresses) in its report and headers;
`PLANTED_PHI` lists the strings that must never reach a shard.

CT and MR series are made from one real slice each: copies placed 2.5 mm apart with their own
SOP Instance UIDs (the pixels are the file's, shifted a little per slice). The EEG is
synthetic (no EEG ships with pydicom), as is the WFDB copy of the real ECG.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

PATIENTS = [  # (first, last, MRN, birth date YYYYMMDD, phone, street address, physician)
    ("Eleanor", "Hartwell", "48213907", "19510304", "(617) 555-0142", "42 Larchmont Road", "Whitcombe"),
    ("Marcus", "Delgado", "55521034", "19630917", "(508) 555-0178", "9 Quarry Hill Lane", "Ashworth"),
    ("Priya", "Raman", "60918237", "19780122", "(413) 555-0199", "311 Bellweather Ave", "Kowalczyk"),
    ("Tobias", "Lindqvist", "71240586", "19450611", "(781) 555-0123", "77 Fenwick Street", "Okonkwo"),
    ("Grace", "Okafor", "83017264", "19890830", "(339) 555-0156", "18 Sycamore Court", "Prendergast"),
    ("Hugo", "Brennan", "92650318", "19370205", "(978) 555-0111", "5 Millbrook Drive", "Castellanos"),
]
KINDS = ("ct", "ecg_dicom", "mr", "ecg_wfdb", "mr_rle", "npy")  # "ct_ecg": both, for benchmarks


def test_files_dir() -> Path:
    """pydicom's own test files (globbed locally: get_testdata_files may download)."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    if not (folder / "CT_small.dcm").exists():
        raise FileNotFoundError(f"{folder}: pydicom's test files are missing; reinstall pydicom")
    return folder


def planted_phi(patient) -> list[str]:
    first, last, mrn, dob, phone, street, doctor = patient
    return [first, last, mrn, dob, f"{dob[4:6]}/{dob[6:]}/{dob[:4]}", phone, street, doctor]


PLANTED_PHI = sorted({s for p in PATIENTS for s in planted_phi(p)})


def report(patient, kind: str) -> str:
    first, last, mrn, dob, phone, street, doctor = patient
    findings = {
        "ct_ecg": "CT chest and 12-lead ECG: no acute findings; sinus rhythm at 68 bpm.",
        "ct": "CT chest without contrast. Lungs are clear. No pleural effusion. "
              "A 4 mm nodule in the right upper lobe is unchanged.",
        "mr": "MRI brain. No acute infarct. Mild periventricular white matter changes.",
        "mr_rle": "MRI brain follow-up. Stable appearance compared with the prior study.",
        "ecg_dicom": "12-lead ECG: sinus rhythm, rate 72 bpm, PR 160 ms, QRS 90 ms, QTc 420 ms.",
        "ecg_wfdb": "Resting ECG: sinus bradycardia at 56 bpm, no ST changes.",
        "npy": "Routine EEG with ECG channel: normal background, no epileptiform discharges.",
    }[kind]
    return (f"Patient: {first} {last}\nMRN: {mrn}\n"
            f"DOB: {dob[4:6]}/{dob[6:]}/{dob[:4]}\n"
            f"Address: {street}, Boston, MA 02118\nPhone: {phone}\n"
            f"Referring physician: Dr. {doctor}\n\nFINDINGS: {findings}\n\n"
            f"Discussed with Dr. {doctor} by phone. Signed: {doctor} MD\n")


def _uid(*parts) -> str:
    return "2.25." + str(int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:30], 16))


def _with_phi(ds: pydicom.Dataset, patient, study: str) -> pydicom.Dataset:
    first, last, mrn, dob, phone, street, doctor = patient
    ds.PatientName = f"{last}^{first}"
    ds.PatientID = mrn
    ds.PatientBirthDate = dob
    ds.PatientAddress = f"{street}, Boston"
    ds.PatientTelephoneNumbers = phone
    ds.ReferringPhysicianName = doctor
    ds.InstitutionName = f"{doctor} Imaging Center"
    ds.AccessionNumber = mrn[::-1]
    ds.StudyInstanceUID = _uid(study, "study")
    ds.BurnedInAnnotation = "NO"
    ds.SeriesDescription = f"{ds.Modality} study for {first} {last}"
    return ds


def _write_series(source: Path, folder: Path, patient, study: str, slices: int,
                  skip: int | None = None, upsample: int = 1, burned_in: bool = False) -> None:
    """`slices` copies of one slice along its normal, 2.5 mm apart, named without suffixes
    in nested folders (series are found by headers, not names); `skip` leaves one out;
    `upsample` repeats each pixel (native files only: 128 x 128 -> 512 x 512 with 4)."""
    base = pydicom.dcmread(source)
    series_uid = _uid(study, source.name, "series")
    pixels = base.pixel_array
    if upsample > 1:
        pixels = np.kron(pixels, np.ones((upsample, upsample), pixels.dtype))
        base.Rows, base.Columns = pixels.shape
        base.PixelSpacing = [float(v) / upsample for v in base.PixelSpacing]
    for k in range(slices):
        if k == skip:
            continue
        ds = _with_phi(copy.deepcopy(base), patient, study)
        ds.BurnedInAnnotation = "YES" if burned_in else "NO"
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = _uid(study, source.name, k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.SliceThickness = 2.5
        position = [float(v) for v in base.ImagePositionPatient]
        orientation = np.asarray(base.ImageOrientationPatient, float)
        normal = np.cross(orientation[:3], orientation[3:])
        ds.ImagePositionPatient = [round(p + 2.5 * k * n, 4) for p, n in zip(position, normal)]
        if not base.file_meta.TransferSyntaxUID.is_compressed:  # RLE: keep the real bytes
            shifted = np.roll(pixels, k, axis=1).astype(pixels.dtype)
            ds.PixelData = shifted.tobytes()
        out = folder / f"series_{source.stem.lower()}" / f"{k // 4:03d}" / f"IM{k:04d}"
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out, enforce_file_format=True)


def _ecg_signal(files: Path) -> tuple[np.ndarray, float]:
    ds = pydicom.dcmread(files / "waveform_ecg.dcm")
    return ds.waveform_array(0), float(ds.WaveformSequence[0].SamplingFrequency)


def _write_wfdb(folder: Path, signal: np.ndarray, rate: float, patient) -> None:
    """Format-16 WFDB record of the ECG in microvolts (gain 1000 adu/mV), PHI in comments."""
    first, last, mrn, dob, phone, street, doctor = patient
    digital = np.clip(np.round(signal), -32767, 32767).astype("<i2")
    (folder / "rec01.dat").write_bytes(digital.tobytes())
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    lines = [f"rec01 {digital.shape[1]} {rate:g} {digital.shape[0]}"]
    for k in range(digital.shape[1]):
        lines.append(f"rec01.dat 16 1000/mV 16 0 {int(digital[0, k])} "
                     f"{int(digital[:, k].astype(np.int64).sum()) & 0xFFFF} 0 {leads[k % 12]}")
    lines += [f"# Patient: {first} {last}", f"# MRN: {mrn}", f"# Phone: {phone}",
              "# Diagnosis: sinus bradycardia"]
    (folder / "rec01.hea").write_text("\n".join(lines) + "\n")


def _write_npy(folder: Path, ecg: np.ndarray, rate: float, patient, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(256 * 12)) / 256.0
    alpha = np.sin(2 * np.pi * 10 * t)[None] * rng.uniform(20, 40, (19, 1))
    eeg = (alpha + rng.normal(0, 5, (19, t.size))).astype(np.float32)  # [leads, samples] uV
    np.save(folder / "eeg.npy", eeg)
    np.save(folder / "ecg.npy", ecg.T.astype(np.float32))
    (folder / "waveform.json").write_text(json.dumps({"ecg": {"rate_hz": rate},
                                                      "eeg": {"rate_hz": 256}}))
    (folder / "meta.json").write_text(json.dumps({"patient_id": patient[2]}))


@dataclass(frozen=True)
class DemoCorpus:
    raw: Path
    studies: int
    planted_phi: list[str]


def build_raw(raw: str | Path, studies: int = 12, *, ct_slices: int = 8, ct_upsample: int = 1,
              kinds: tuple[str, ...] = KINDS, bad_inputs: bool = False) -> DemoCorpus:
    """Writes `studies` study folders (cycling through `kinds`: CT, DICOM ECG, MR, WFDB ECG,
    RLE MR, .npy EEG+ECG, or "ct_ecg"; patients cycle through PATIENTS) into `raw`. CT series
    have `ct_slices` slices of 128 x `ct_upsample` pixels a side. With `bad_inputs`, adds the
    cases the writer must report: corrupt and truncated DICOM, a series missing a slice, a
    report that is not UTF-8, an empty study and a series with burned-in annotation."""
    raw, files = Path(raw), test_files_dir()
    ecg, rate = _ecg_signal(files)
    for s in range(studies):
        kind, patient = kinds[s % len(kinds)], PATIENTS[s % len(PATIENTS)]
        name = f"study{s:04d}"
        folder = raw / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.txt").write_text(report(patient, kind), encoding="utf-8")
        if kind in ("ct", "ct_ecg"):
            _write_series(files / "CT_small.dcm", folder, patient, name, ct_slices,
                          upsample=ct_upsample)
        if kind in ("mr", "mr_rle"):
            source = {"mr": "MR_small.dcm", "mr_rle": "MR_small_RLE.dcm"}[kind]
            _write_series(files / source, folder, patient, name, 4)
        if kind in ("ecg_dicom", "ct_ecg"):
            ds = _with_phi(pydicom.dcmread(files / "waveform_ecg.dcm"), patient, name)
            ds.save_as(folder / "ecg_waveform", enforce_file_format=True)
        if kind == "ecg_wfdb":
            _write_wfdb(folder, ecg, rate, patient)
        if kind == "npy":
            _write_npy(folder, ecg, rate, patient, seed=s)
    if bad_inputs:
        _write_bad_inputs(raw, files)
    return DemoCorpus(raw, studies + (6 if bad_inputs else 0), PLANTED_PHI)


def _write_bad_inputs(raw: Path, files: Path) -> None:
    patient = PATIENTS[0]
    corrupt = raw / "bad_corrupt"
    _write_series(files / "CT_small.dcm", corrupt, patient, corrupt.name, 4)
    (corrupt / "junk.dcm").write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4)
    truncated = raw / "bad_truncated"
    truncated.mkdir(parents=True, exist_ok=True)
    (truncated / "report.txt").write_text(report(patient, "ct"))
    (truncated / "IM0001").write_bytes((files / "CT_small.dcm").read_bytes()[:2000])
    gap = raw / "bad_missing_slice"
    _write_series(files / "CT_small.dcm", gap, patient, gap.name, 6, skip=3)
    (gap / "report.txt").write_text(report(patient, "ct"))
    latin = raw / "bad_not_utf8"
    latin.mkdir(parents=True, exist_ok=True)
    (latin / "report.txt").write_bytes(report(patient, "ct").replace("Lungs", "Lüngs").encode("latin-1"))
    (raw / "bad_empty").mkdir(parents=True, exist_ok=True)
    burned = raw / "bad_burned_in"
    _write_series(files / "CT_small.dcm", burned, patient, burned.name, 3, burned_in=True)
    (burned / "report.txt").write_text(report(patient, "ct"))


def make_demo(root: str | Path, studies: int = 12, *, key_file: str | Path | None = None,
              bad_inputs: bool = False, tokenizer: bool = False, workers: int = 1,
              preprocess=None, vocab_size: int | None = None) -> dict:
    """The whole demo: `root/raw` (build_raw), `root/shards` (make_shards with `preprocess`,
    default the demo preset; a rerun skips verified shards) and, with `tokenizer`,
    `root/tokenizer.model` of at most `vocab_size` pieces (default: the demo profile's;
    recorded in the manifest). The key: `key_file`, else $MEGAMED_DEID_KEY_FILE, else a
    random key created once as `root/demo.key` (mode 600; demo data only). Returns
    make_shards' summary plus "shards" (the folder) and "tokenizer" (path or None)."""
    from megamed.config import load_config
    from megamed.data.deid import load_key
    from megamed.data.preprocess import preset
    from megamed.data.shards import make_shards, merge_manifest
    from megamed.data.tokenizer import texts_from_shards, train_tokenizer

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key_file = key_file or os.environ.get("MEGAMED_DEID_KEY_FILE")
    if key_file is None:
        key_file = root / "demo.key"
        if not key_file.exists():
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as f:
                f.write(secrets.token_hex(32))
    corpus = build_raw(root / "raw", studies, bad_inputs=bad_inputs)
    out = root / "shards"
    summary = make_shards(corpus.raw, out, load_key(key_file), preprocess or preset("demo"),
                          samples_per_shard=4, workers=workers, progress=False)
    model = None
    if tokenizer:
        model = train_tokenizer(texts_from_shards(sorted(out.glob("shard-*.tar"))),
                                root / "tokenizer",
                                vocab_size or load_config("demo").model.vocab_size)
        merge_manifest(out, tokenizer=str(model))
    return dict(summary, shards=str(out), tokenizer=model and str(model))
