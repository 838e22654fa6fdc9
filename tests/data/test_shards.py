"""Shard writer on the demo corpus (real pydicom DICOM/ECG files, planted PHI, bad inputs):
PHI never reaches a shard, plain webdataset opens the shards, manifest offsets give the exact
member bytes, arrays equal a pydicom + numpy/scipy reference, resume skips verified shards and
rewrites a corrupted one, bad inputs are reported, machines splitting the work agree."""
import importlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
import webdataset as wds
from scipy import signal as sps

from megamed.data.deid import Pseudonymizer, deidentify_text
from megamed.data.demo import PLANTED_PHI, build_raw, make_demo
from megamed.data.preprocess import PreprocessConfig, preset
from megamed.data.shards import ShardError, make_shards, merge_manifest
from megamed.data.studies import StudyReader
from megamed.data.tokenizer import Tokenizer

KEY = b"test-key-0123456789abcdef-shards"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    corpus = build_raw(root / "raw", 12, bad_inputs=True)
    summary = make_shards(corpus.raw, root / "shards", KEY, preset("demo"), samples_per_shard=4,
                          progress=False)
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    return root, summary, manifest


def _tars(out: Path) -> list[Path]:
    return sorted(out.glob("shard-*.tar"))


def _sample(demo, study: str) -> dict:
    """The study's members as read by plain webdataset, keyed by extension."""
    root, _, _ = demo
    key = StudyReader(root / "raw", KEY, preset("demo")).sample_key(study)
    for sample in wds.WebDataset([str(p) for p in _tars(root / "shards")], shardshuffle=False):
        if sample["__key__"] == key:
            return sample
    raise AssertionError(f"no sample for {study}")


def test_no_planted_phi_reaches_any_shard(demo):
    root, _, _ = demo
    outputs = _tars(root / "shards") + [root / "shards" / "manifest.json",
                                        root / "shards" / "errors.jsonl"]
    checked = 0
    for path in outputs:
        data = path.read_bytes()
        if path.suffix == ".tar":  # every member's bytes, and the member names
            with tarfile.open(path) as tar:
                data += b"".join(tar.extractfile(m).read() + m.name.encode() for m in tar)
        for phi in PLANTED_PHI:
            assert phi.encode() not in data, f"planted PHI {phi!r} found in {path.name}"
            assert phi.upper().encode() not in data, f"planted PHI {phi!r} found in {path.name}"
            checked += 1
    assert checked == len(outputs) * len(PLANTED_PHI)
    report = (root / "raw" / "study0000" / "report.txt").read_text()
    assert any(phi in report for phi in PLANTED_PHI)  # the check above had PHI to find


def test_plain_webdataset_reads_every_sample_the_manifest_lists(demo):
    root, summary, manifest = demo
    urls = [str(root / "shards" / s["name"]) for s in manifest["shards"]]
    keys = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)]
    listed = [m["key"] for s in manifest["shards"] for m in s["members"]]
    assert keys == listed and len(keys) == manifest["num_samples"] == summary["samples"] == 16
    assert manifest["format"] == "megamed-shards/1"
    assert manifest["preprocess"] == preset("demo").to_dict()
    assert manifest["preprocess_hash"] == PreprocessConfig.from_dict(manifest["preprocess"]).hash()
    assert manifest["deid_key_id"] == Pseudonymizer(KEY).key_id


def test_manifest_offsets_read_back_the_exact_member_bytes(demo):
    root, _, manifest = demo
    for shard in manifest["shards"]:
        path = root / "shards" / shard["name"]
        data = path.read_bytes()
        assert len(data) == shard["bytes"]
        assert __import__("hashlib").sha256(data).hexdigest() == shard["sha256"]
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        listed = 0
        with open(path, "rb") as f:
            for member in shard["members"]:
                for ext, (offset, size) in member["files"].items():
                    f.seek(offset)
                    assert f.read(size) == members[f"{member['key']}.{ext}"]
                    listed += 1
        assert listed == len(members)


def _reference_ct(folder: Path, config: PreprocessConfig) -> np.ndarray:
    """pydicom decode + numpy windowing + torch resize: [windows, size, size] float16."""
    slices = [pydicom.dcmread(p) for p in folder.rglob("IM*")]
    orientation = np.asarray(slices[0].ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    slices.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    middle = slices[len(slices) // 2]
    hu = middle.pixel_array.astype(np.float32) * float(middle.RescaleSlope) + float(middle.RescaleIntercept)
    size = config.image_size
    resized = torch.nn.functional.interpolate(torch.from_numpy(hu)[None, None], size=(size, size),
                                              mode="bilinear", align_corners=True)[0, 0].numpy()
    centers_widths = {"soft_tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800)}
    channels = []
    for name in config.ct_windows:
        c, w = centers_widths[name]
        channels.append(np.clip((resized - (c - 0.5)) / (w - 1) + 0.5, 0, 1))
    return np.stack(channels).astype(np.float16)


def test_ct_image_and_report_equal_a_pydicom_reference(demo):
    root, _, _ = demo
    sample = _sample(demo, "study0000")
    image = np.load(io.BytesIO(sample["img.npy"]))
    expected = _reference_ct(root / "raw" / "study0000", preset("demo"))
    assert image.dtype == np.float16 and image.shape == expected.shape == (3, 256, 256)
    np.testing.assert_allclose(image.astype(np.float32), expected.astype(np.float32), atol=2e-3)
    meta = json.loads(sample["json"])
    assert meta["image"]["modality"] == "CT" and meta["image"]["slices"] == 8
    # the descriptor survives through the text de-identifier (its planted name does not)
    assert meta["image"]["series_description"].startswith("CT study for ")
    assert meta["modalities"] == ["text", "image"]
    report = (root / "raw" / "study0000" / "report.txt").read_text()
    assert sample["txt"].decode() == deidentify_text(report, Pseudonymizer(KEY))


def test_dicom_ecg_equals_a_pydicom_scipy_reference(demo):
    root, _, _ = demo
    sample = _sample(demo, "study0001")
    ecg = np.load(io.BytesIO(sample["ecg.npy"]))
    ds = pydicom.dcmread(root / "raw" / "study0001" / "ecg_waveform")
    raw = ds.waveform_array(0)  # [10000, 12] at 1000 Hz
    x = sps.resample_poly(raw, 1, 2, axis=0)
    x = sps.sosfiltfilt(sps.butter(4, [0.5, 100.0], btype="bandpass", fs=500, output="sos"), x, axis=0)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    expected = x[:5000].T.astype(np.float16)
    assert ecg.dtype == np.float16 and ecg.shape == (12, 5000)
    np.testing.assert_allclose(ecg.astype(np.float32), expected.astype(np.float32), atol=1e-2)
    meta = json.loads(sample["json"])
    assert meta["ecg"]["rate_hz"] == 500.0 and meta["ecg"]["source"] == "dicom"


def test_bad_inputs_are_reported_with_a_reason(demo):
    root, summary, _ = demo
    errors = [json.loads(line) for line in (root / "shards" / "errors.jsonl").read_text().splitlines()]
    assert summary["errors"] == len(errors)
    by_path = {e["path"]: e["reason"] for e in errors}
    assert "not a readable DICOM" in by_path["bad_corrupt/junk.dcm"]
    assert "not a readable DICOM" in by_path["bad_truncated/IM0001"]
    assert "missing slice" in by_path["bad_missing_slice/series_ct_small/001/IM0004"]
    assert "not UTF-8" in by_path["bad_not_utf8/report.txt"]
    assert "nothing readable" in by_path["bad_empty"] and "nothing readable" in by_path["bad_not_utf8"]
    assert "Burned In Annotation" in by_path["bad_burned_in/series_ct_small/000/IM0000"]
    # the usable parts of a partly bad study are kept: CT of bad_corrupt, reports of the others
    assert set(json.loads(_sample(demo, "bad_corrupt")["json"])["modalities"]) == {"image"}
    for study in ("bad_truncated", "bad_missing_slice", "bad_burned_in"):
        assert json.loads(_sample(demo, study)["json"])["modalities"] == ["text"]


def test_resume_skips_verified_shards_and_rewrites_a_corrupted_one(demo, tmp_path):
    root, _, manifest = demo
    out = tmp_path / "shards"
    shutil.copytree(root / "shards", out)
    again = make_shards(root / "raw", out, KEY, preset("demo"), samples_per_shard=4, progress=False)
    assert again["written"] == 0 and again["skipped"] == len(manifest["shards"])
    assert again["samples"] == manifest["num_samples"] and again["errors"] > 0
    victim = out / manifest["shards"][1]["name"]
    data = bytearray(victim.read_bytes())
    data[700] ^= 0xFF
    victim.write_bytes(bytes(data))
    fixed = make_shards(root / "raw", out, KEY, preset("demo"), samples_per_shard=4, progress=False)
    assert fixed["written"] == 1 and fixed["skipped"] == len(manifest["shards"]) - 1
    assert victim.read_bytes() == (root / "shards" / victim.name).read_bytes()
    other_config = PreprocessConfig(image_size=64)  # another config rewrites everything
    redone = make_shards(root / "raw", out, KEY, other_config, samples_per_shard=4, progress=False)
    assert redone["written"] == len(manifest["shards"])


def test_split_over_machines_and_processes_gives_the_same_shards(demo, tmp_path):
    root, _, manifest = demo
    out = tmp_path / "split"
    first = make_shards(root / "raw", out, KEY, preset("demo"), samples_per_shard=4,
                        num_workers=2, worker_index=0, workers=2, progress=False)
    assert first["manifest"] is None  # worker 1's shards are still missing
    with pytest.raises(ShardError, match="no record yet"):
        merge_manifest(out)
    second = make_shards(root / "raw", out, KEY, preset("demo"), samples_per_shard=4,
                         num_workers=2, worker_index=1, progress=False)
    assert second["manifest"] is not None
    merged = json.loads((out / "manifest.json").read_text())
    assert [s["sha256"] for s in merged["shards"]] == [s["sha256"] for s in manifest["shards"]]
    assert (out / "errors.jsonl").read_bytes() == (root / "shards" / "errors.jsonl").read_bytes()


def test_cli_needs_a_key_and_writes_shards(demo, tmp_path, monkeypatch, capsys):
    root, _, manifest = demo
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    tool = importlib.import_module("make_shards")
    argv = [str(root / "raw"), str(tmp_path / "out"), "--samples-per-shard", "4", "--no-progress"]
    monkeypatch.delenv("MEGAMED_DEID_KEY_FILE", raising=False)
    assert tool.main(argv) == 2 and "key" in capsys.readouterr().err
    (tmp_path / "key").write_bytes(KEY)
    monkeypatch.setenv("MEGAMED_DEID_KEY_FILE", str(tmp_path / "key"))
    assert tool.main(argv) == 1  # 1: some inputs were skipped, listed in errors.jsonl
    assert "errors.jsonl" in capsys.readouterr().err
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["sha256"] for s in written["shards"]] == [s["sha256"] for s in manifest["shards"]]
    assert tool.main([str(root / "raw"), str(tmp_path / "out"), "--merge"]) == 0


def test_demo_builds_shards_and_a_tokenizer_and_reruns_as_a_resume(tmp_path, monkeypatch):
    monkeypatch.delenv("MEGAMED_DEID_KEY_FILE", raising=False)
    first = make_demo(tmp_path, 6, tokenizer=True)
    assert first["samples"] == 6 and first["errors"] == 0
    assert (tmp_path / "demo.key").stat().st_mode & 0o777 == 0o600
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    model = Path(first["tokenizer"])
    assert manifest["tokenizer"] == {"path": str(model), "sha256": Tokenizer(model).sha256}
    key = (tmp_path / "demo.key").read_bytes().strip()
    assert manifest["deid_key_id"] == Pseudonymizer(key).key_id
    again = make_demo(tmp_path, 6)
    assert again["written"] == 0 and again["skipped"] == len(manifest["shards"])
    rewritten = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert rewritten["tokenizer"] == manifest["tokenizer"]  # kept: the model is unchanged


def test_3d_ct_and_mr_and_npy_eeg_equal_their_references(demo):
    root, _, _ = demo
    config = PreprocessConfig(image_mode="3d", image_size=32, depth=6)
    result = StudyReader(root / "raw", KEY, config)("study0000")
    image = np.load(io.BytesIO(result.members["img.npy"]))
    slices = sorted((pydicom.dcmread(p) for p in (root / "raw" / "study0000").rglob("IM*")),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))  # axial: normal is z
    hu = np.stack([ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope)
                   + float(ds.RescaleIntercept) for ds in slices])
    volume = torch.nn.functional.interpolate(torch.from_numpy(hu)[None, None], size=(6, 32, 32),
                                             mode="trilinear", align_corners=True)[0, 0].numpy()
    expected = np.stack([np.clip((volume - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
                         for c, w in ((40, 400), (-600, 1500), (400, 1800))]).astype(np.float16)
    assert image.shape == expected.shape == (3, 6, 32, 32)
    np.testing.assert_allclose(image.astype(np.float32), expected.astype(np.float32), atol=2e-3)

    mr = np.load(io.BytesIO(_sample(demo, "study0002")["img.npy"]))  # MR: one percentile channel
    middle = sorted((pydicom.dcmread(p) for p in (root / "raw" / "study0002").rglob("IM*")),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))[2]
    values = torch.nn.functional.interpolate(
        torch.from_numpy(middle.pixel_array.astype(np.float32))[None, None], size=(256, 256),
        mode="bilinear", align_corners=True)[0, 0].numpy()
    low, high = np.percentile(values, (0.5, 99.5))
    np.testing.assert_allclose(mr[0].astype(np.float32), np.clip((values - low) / (high - low), 0, 1),
                               atol=2e-3)

    eeg = np.load(io.BytesIO(_sample(demo, "study0005")["eeg.npy"]))
    raw = np.load(root / "raw" / "study0005" / "eeg.npy").astype(np.float64).T  # [3072, 19], 256 Hz
    x = sps.sosfiltfilt(sps.butter(4, [0.5, 70.0], btype="bandpass", fs=256, output="sos"), raw, axis=0)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    start = (x.shape[0] - 2560) // 2
    np.testing.assert_allclose(eeg.astype(np.float32), x[start:start + 2560].T.astype(np.float16),
                               atol=1e-2)
