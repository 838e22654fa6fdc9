"""One raw study folder -> the de-identified members of one shard sample.

Raw layout (the input contract): `RAW/<study>/report.txt` (UTF-8, optional); DICOM files
anywhere below the folder, whatever their names (series are found by SeriesInstanceUID in the
headers); waveforms as DICOM Waveform files, WFDB records (`*.hea` + signal files) or
`ecg.npy` / `eeg.npy` ([leads, samples]) with `waveform.json` giving the rate; an optional
`meta.json`. Hidden files (".name") are ignored; any other file that is not readable is
reported.

Every problem becomes an error record {"study", "path", "reason"} (path relative to RAW); the
rest of the study is still used. A study with nothing usable yields no sample and one more
record. Reasons never quote file contents, so no PHI reaches the error report.
"""
from __future__ import annotations

import io
import json
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from megamed.data import dicom, waveform
from megamed.data.deid import (DeidError, Pseudonymizer, deidentify_dicom, deidentify_text,
                               deidentify_wfdb_header)
from megamed.data.deid.dicom_fast import fast_deidentify
from megamed.data.preprocess import PreprocessConfig, PreprocessError, image_channels, waveform_leads

TEXT_FILES = {"report.txt", "meta.json", "waveform.json"}
NPY_WAVEFORMS = {"ecg.npy": "ecg", "eeg.npy": "eeg"}
INPUT_ERRORS = (dicom.DicomError, waveform.WaveformError, PreprocessError, DeidError,
                OSError, ValueError)


@dataclass
class StudyResult:
    """`members`: {"json": bytes, "txt": ..., "img.npy": ..., "ecg.npy": ..., "eeg.npy": ...}
    (empty when the study was skipped); `errors`: the error records."""

    name: str
    key: str
    members: dict[str, bytes] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)


def list_studies(raw: str | os.PathLike) -> list[str]:
    """Study folder names under RAW, sorted (the order that fixes shard contents)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: no such raw folder")
    return sorted(p.name for p in raw.iterdir() if p.is_dir() and not p.name.startswith("."))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _reason(error: Exception) -> str:
    """The reason of an input error; for anything unexpected, its type and where it was raised
    (never its message, which could quote a header value)."""
    if isinstance(error, (dicom.DicomError, waveform.WaveformError)):
        return error.reason
    if isinstance(error, (PreprocessError, DeidError, OSError)):  # ours, or a path
        return f"{type(error).__name__}: {error}"
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"unexpected {type(error).__name__} at {Path(frame.filename).name}:{frame.lineno}"


class StudyReader:
    """Reads, de-identifies and preprocesses study folders under `raw`; picklable, so pool
    workers each hold one."""

    def __init__(self, raw: str | os.PathLike, key: bytes, config: PreprocessConfig):
        self.raw, self.config = Path(raw), config
        self.config_hash = config.hash()
        self.pseudonymizer = Pseudonymizer(key)

    def sample_key(self, name: str) -> str:
        """Pseudonymous study id: a keyed hash of the folder name (no dots: WebDataset splits
        member names at the first dot)."""
        return "s" + self.pseudonymizer.token("study", name, 26)

    def __call__(self, name: str) -> StudyResult:
        study = _Study(self, name)
        try:
            study.read()
        except Exception as e:  # one study must never stop the run
            study.error(self.raw / name, _reason(e))
            study.members.clear()
        return study.result()


class _Study:
    def __init__(self, reader: StudyReader, name: str):
        self.reader, self.name, self.folder = reader, name, reader.raw / name
        self.config = reader.config
        self.members: dict[str, bytes] = {}
        self.errors: list[dict] = []
        self.meta: dict = {"image": None, "ecg": None, "eeg": None}
        self.patient: str | None = None

    def error(self, path, reason: str) -> None:
        relative = os.path.relpath(path, self.reader.raw)
        self.errors.append({"study": self.name, "path": relative, "reason": reason})

    def result(self) -> StudyResult:
        key = self.reader.sample_key(self.name)
        if not self.members:
            self.error(self.folder, "nothing readable: no usable report, image series or waveform")
            return StudyResult(self.name, key, {}, self.errors)
        kinds = [k for k in ("txt", "img.npy", "ecg.npy", "eeg.npy") if k in self.members]
        self.meta["modalities"] = [{"txt": "text", "img.npy": "image"}.get(k, k[:3]) for k in kinds]
        self.meta["patient"] = self.patient or self.reader.pseudonymizer.patient_id(
            "study-folder\0" + self.name)
        self.meta["preprocess_hash"] = self.reader.config_hash
        self.members["json"] = json.dumps(self.meta, sort_keys=True).encode()
        return StudyResult(self.name, key, self.members, self.errors)

    # ------------------------------------------------------------------ files
    def read(self) -> None:
        files = sorted(p for p in self.folder.rglob("*")
                       if p.is_file() and not any(part.startswith(".")
                                                  for part in p.relative_to(self.folder).parts))
        top = {p.name: p for p in files if p.parent == self.folder}
        meta = self._read_json(top.get("meta.json"))
        if meta and meta.get("patient_id") is not None:
            self.patient = self.reader.pseudonymizer.patient_id(str(meta["patient_id"]))
        headers = sorted(p for p in files if p.suffix == ".hea")
        signal_files = {h.parent / s for h in headers for s in _wfdb_signal_files(h)}
        candidates = [p for p in files if p not in signal_files and p not in headers
                      and not (p.parent == self.folder and (p.name in TEXT_FILES
                                                             or p.name in NPY_WAVEFORMS))]
        images, waveforms = self._classify(candidates)
        self._image(images)
        for path, recording in waveforms:
            self._dicom_waveform(path, recording)
        for header in headers:
            self._wfdb(header)
        rates = self._read_json(top.get("waveform.json"))
        for file, kind in NPY_WAVEFORMS.items():
            if file in top:
                self._npy_waveform(top[file], kind, rates)
        if "report.txt" in top:
            self._report(top["report.txt"])

    def _read_json(self, path: Path | None) -> dict | None:
        if path is None:
            return None
        try:
            value = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            self.error(path, f"not a readable UTF-8 JSON file ({type(e).__name__})")
            return None
        if not isinstance(value, dict):
            self.error(path, f"expected a JSON object, found {type(value).__name__}")
            return None
        return value

    def _classify(self, paths) -> tuple[dict[str, list], list]:
        """Decodes every candidate: images grouped by SeriesInstanceUID, and the waveform
        files (those without Pixel Data that hold a Waveform Sequence) with their signal."""
        series: dict[str, list] = {}
        waveforms = []
        for path in paths:
            try:
                image = dicom.read_image(path)
            except dicom.DicomError as e:
                try:
                    waveforms.append((path, waveform.read_dicom_waveform(path)))
                except dicom.DicomError as w:
                    self.error(path, f"not a readable DICOM image ({e.reason}) or waveform "
                                     f"({w.reason})")
                continue
            uid = image.series_instance_uid or f"no-uid:{path}"
            series.setdefault(uid, []).append(image)
        return series, waveforms

    # ------------------------------------------------------------------ images
    def _volume(self, images: list) -> tuple[np.ndarray, tuple]:
        """[slices, rows, cols] after the Modality LUT and the (slice, row, col) spacing; in
        2d mode only the middle slice, the one `image_channels` keeps."""
        if len(images) == 1 and images[0].number_of_frames > 1:  # multi-frame: frames are slices
            image = images[0]
            if image.samples_per_pixel != 1:
                raise dicom.DicomError(image.path, "colour images are not preprocessed "
                                                   f"({image.samples_per_pixel} samples per pixel)")
            row, col = image.pixel_spacing or (1.0, 1.0)
            return dicom.rescaled(image), (image.slice_thickness or 1.0, row, col)
        if self.config.image_mode == "2d":
            ordered, spacing = dicom.order_slices(images)
            return dicom.rescaled(ordered[len(ordered) // 2])[None], spacing
        series = dicom.stack_series(images)
        return series.volume, series.spacing

    def _image(self, series: dict[str, list]) -> None:
        """Uses the largest CT or MR series (else the largest other one) that decodes and
        de-identifies; reports the errors of those tried before it."""
        ranked = sorted(series.values(), key=lambda images: (
            images[0].modality not in ("CT", "MR"), -sum(i.number_of_frames for i in images),
            min(i.path for i in images)))
        for images in ranked:
            burned = sorted(i.path for i in images if i.burned_in_annotation)
            if burned:
                self.error(burned[0], "Burned In Annotation is YES: the pixels may show PHI; "
                                      f"series of {len(images)} files not used")
                continue
            try:
                volume, spacing = self._volume(images)
                slices = len(images) if len(images) > 1 else images[0].number_of_frames
                ds = self._deidentified_header(min(i.path for i in images))
                modality = images[0].modality
                pixels, channels = image_channels(volume, spacing, modality, self.config)
            except INPUT_ERRORS as e:
                self.error(getattr(e, "path", None) or images[0].path, _reason(e))
                continue
            self.members["img.npy"] = _npy_bytes(pixels)
            self.meta["image"] = {
                "modality": modality, "shape": list(pixels.shape), "windows": channels,
                "slices": int(slices), "spacing_mm": [round(float(x), 4) for x in spacing],
                "body_part": str(ds.get("BodyPartExamined", "")) or None,
                "series_description": str(ds.get("SeriesDescription", "")) or None}
            return

    def _deidentified_header(self, path) -> pydicom.Dataset:
        """The file's header through the PS3.15 profile; sets the study's patient pseudonym."""
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as e:  # pydicom raises many types on malformed files
            raise dicom.DicomError(str(path), f"pydicom cannot read the header ({type(e).__name__})")
        # clean_descriptors: SeriesDescription & co. survive, through the text de-identifier
        ds = deidentify_dicom(ds, self.reader.pseudonymizer, clean_descriptors=True, in_place=True)
        if self.patient is None and ds.get("PatientID"):
            self.patient = str(ds.PatientID)
        return ds

    # ------------------------------------------------------------------ waveforms
    def _store_waveform(self, kind: str, signal: np.ndarray, rate: float, source: str,
                        **extra) -> None:
        if f"{kind}.npy" in self.members:
            return  # the first of several recordings of one kind is used
        leads = waveform_leads(signal, rate, kind, self.config)
        self.members[f"{kind}.npy"] = _npy_bytes(leads)
        self.meta[kind] = {"shape": list(leads.shape), "rate_hz": getattr(self.config, f"{kind}_rate_hz"),
                           "source": source, "leads_present": int(signal.shape[1]),
                           "source_rate_hz": float(rate), **extra}

    def _dicom_waveform(self, path: Path, recording: waveform.Waveform) -> None:
        ds = self._fast_waveform_header(path)
        deidentified = ds is not None
        if ds is None:                   # the reference path: read, check, de-identify
            try:
                ds = pydicom.dcmread(path)
            except Exception as e:  # pydicom raises many types on malformed files
                self.error(path, f"pydicom cannot read the header ({type(e).__name__})")
                return
        modality = str(ds.get("Modality", ""))
        if modality not in ("ECG", "EEG"):
            self.error(path, f"waveform Modality {modality or '(none)'} is neither ECG nor EEG")
            return
        try:
            if not deidentified:
                ds = deidentify_dicom(ds, self.reader.pseudonymizer, in_place=True)
            if self.patient is None and ds.get("PatientID"):
                self.patient = str(ds.PatientID)
            self._store_waveform(modality.lower(), recording.signal, recording.rate, "dicom")
        except INPUT_ERRORS as e:
            self.error(path, _reason(e))

    def _fast_waveform_header(self, path: Path) -> pydicom.Dataset | None:
        """The de-identified header of a DICOM waveform file from the fast path (bytes to
        bytes, the reference's elements; about 4x faster than pydicom reading and
        de-identifying the dataset), or None where it does not apply (the caller takes the
        reference path, with its error messages). Modality is kept as it came."""
        try:
            out = fast_deidentify(path.read_bytes(), self.reader.pseudonymizer)
        except OSError:
            return None
        if out is None:
            return None
        try:
            return pydicom.dcmread(io.BytesIO(out), stop_before_pixels=True,
                                   specific_tags=["Modality", "PatientID"])
        except Exception:  # pydicom raises many types; the reference path reports it
            return None

    def _wfdb(self, header: Path) -> None:
        """A WFDB record: ECG unless the record name starts with "eeg". Header comments go
        through the text de-identifier and are kept as "notes"."""
        kind = "eeg" if header.stem.lower().startswith("eeg") else "ecg"
        try:
            recording = waveform.read_wfdb(header)
            text = header.read_bytes().decode("utf-8")
            clean = deidentify_wfdb_header(text, self.reader.pseudonymizer)
            notes = [ln.lstrip("#").strip() for ln in clean.splitlines() if ln.startswith("#")]
            self._store_waveform(kind, recording.signal, recording.rate, "wfdb",
                                 notes=[n for n in notes if n])
        except UnicodeDecodeError:
            self.error(header, "WFDB header is not UTF-8 text")
        except INPUT_ERRORS as e:
            self.error(getattr(e, "path", None) or header, _reason(e))

    def _npy_waveform(self, path: Path, kind: str, rates: dict | None) -> None:
        spec = (rates or {}).get(kind, rates or {})
        rate = spec.get("rate_hz") if isinstance(spec, dict) else None
        if not isinstance(rate, (int, float)) or rate <= 0:
            self.error(path, f"waveform.json gives no positive rate_hz for {kind} "
                             f'(expected {{"rate_hz": 500}} or {{"{kind}": {{"rate_hz": 500}}}})')
            return
        try:
            recording = waveform.read_npy(path, float(rate))
            # the contract stores [leads, samples]; read_npy reads [samples, channels]
            stored_2d = np.load(path, mmap_mode="r").ndim == 2
            signal = recording.signal.T if stored_2d else recording.signal
            self._store_waveform(kind, signal, float(rate), "npy")
        except INPUT_ERRORS as e:
            self.error(path, _reason(e))

    # ------------------------------------------------------------------ text
    def _report(self, path: Path) -> None:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.error(path, f"report is not UTF-8 (invalid byte at offset {e.start}); "
                             "re-export it as UTF-8")
            return
        if not text.strip():
            self.error(path, "report is empty")
            return
        try:
            self.members["txt"] = deidentify_text(text, self.reader.pseudonymizer).encode("utf-8")
        except INPUT_ERRORS as e:
            self.error(path, _reason(e))


def _wfdb_signal_files(header: Path) -> list[str]:
    """Signal file names a WFDB header refers to (the first field of each signal line)."""
    try:
        lines = [ln.split("#")[0].split() for ln in header.read_text(errors="replace").splitlines()]
    except OSError:
        return []
    lines = [ln for ln in lines if ln]
    try:
        count = int(lines[0][1])
    except (IndexError, ValueError):
        return []
    return [fields[0] for fields in lines[1:1 + count] if fields]
