"""Waveform readers against pydicom and an independent WFDB writer; preprocessing against
numpy / scipy references computed here."""
import io
import pathlib

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from scipy import signal as sps

from megamed.data.dicom import DicomError
from megamed.data.waveform import (WaveformError, bandpass, crop_or_pad, log_mel_spectrogram,
                                   mel_filterbank, normalize_leads, power_spectrogram, read_dicom_waveform,
                                   read_npy, read_wfdb, remove_baseline_wander, resample,
                                   waveform_array)

ECG = get_testdata_file("waveform_ecg.dcm")


@pytest.mark.parametrize("index", [0, 1])
def test_dicom_waveform_equals_pydicom(index):
    expected = pydicom.dcmread(ECG).waveform_array(index)
    ours = waveform_array(ECG, index)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


def test_dicom_waveform_in_implicit_vr_equals_pydicom():
    ds = pydicom.dcmread(ECG)
    out = io.BytesIO()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    np.testing.assert_array_equal(waveform_array(out.getvalue(), 1), ds.waveform_array(1))


def test_dicom_waveform_metadata_equals_pydicom():
    ds = pydicom.dcmread(ECG)
    group = ds.WaveformSequence[0]
    wave = read_dicom_waveform(ECG)
    assert wave.rate == float(group.SamplingFrequency)
    assert wave.channels == tuple(c.ChannelSourceSequence[0].CodeMeaning
                                  for c in group.ChannelDefinitionSequence)
    assert wave.units == tuple(c.ChannelSensitivityUnitsSequence[0].CodeValue
                               for c in group.ChannelDefinitionSequence)


def test_dicom_waveform_errors_name_the_file():
    with pytest.raises(DicomError, match="no Waveform Sequence") as info:
        waveform_array(get_testdata_file("CT_small.dcm"))
    assert info.value.path == get_testdata_file("CT_small.dcm")
    with pytest.raises(DicomError, match="multiplex group 5 requested, the file has 2"):
        waveform_array(ECG, 5)
    ds = pydicom.dcmread(ECG)
    ds.WaveformSequence[0].WaveformData = ds.WaveformSequence[0].WaveformData[:1000]
    out = io.BytesIO()
    ds.save_as(out)
    with pytest.raises(DicomError, match="Waveform Data has 1000 bytes") as info:
        waveform_array(out.getvalue())
    assert info.value.path == "<bytes>"



def test_deeply_nested_waveform_file_is_a_dicom_error():
    """Issue 9 item 2: 20,000 nested sequences (320 kB) overflowed the stack through the
    waveform reader; now the one nesting bound refuses them."""
    from dicom_factory import nested_sequences

    data = pathlib.Path(ECG).read_bytes() + nested_sequences(20000, tag=0x00091010)
    with pytest.raises(DicomError, match="nested deeper than 64"):
        read_dicom_waveform(data)


def _edited_ecg(edit) -> bytes:
    ds = pydicom.dcmread(ECG)
    edit(ds.WaveformSequence[0])
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize("edit", [
    lambda g: g.add_new(0x54001006, "SQ", [pydicom.Dataset()]),  # interpretation: a sequence
    lambda g: g.add_new(0x54001010, "SQ", [pydicom.Dataset()]),  # Waveform Data: a sequence
    lambda g: g.add_new(0x003A0010, "UL", [2**32 - 1, 7]),       # samples: two, the first huge
    lambda g: g.add_new(0x003A0005, "FL", 3.5),                  # channels: not an integer
    lambda g: g.add_new(0x003A0200, "US", [1, 2]),               # channel definitions: numbers
    lambda g: g.add_new(0x003A001A, "SQ", []),                   # sampling frequency: empty sequence
], ids=["interpretation-sq", "data-sq", "samples-vm2", "channels-float", "definitions-us", "rate-sq"])
def test_waveform_attributes_of_the_wrong_kind_are_dicom_errors(edit):
    with pytest.raises(DicomError, match="Waveform|waveform|expected|multiplex") as info:
        read_dicom_waveform(_edited_ecg(edit))
    assert info.value.path == "<bytes>"


def _pack_212(values: np.ndarray) -> bytes:
    """signal(5) format 212, written sample pair by sample pair."""
    twelve = [int(v) & 0xFFF for v in values] + [0] * (len(values) % 2)
    out = bytearray()
    for a, b in zip(twelve[::2], twelve[1::2]):
        out += bytes([a & 0xFF, (a >> 8) | ((b >> 8) << 4), b & 0xFF])
    return bytes(out)


def _write_record(tmp_path, digital: np.ndarray, fmt: int, gains, baselines, offset=0,
                  checksums=None):
    """A WFDB record: header(5) text and one interleaved signal file."""
    samples, channels = digital.shape
    data = (digital.astype("<i2").tobytes() if fmt == 16 else _pack_212(digital.reshape(-1)))
    (tmp_path / "rec.dat").write_bytes(b"\xAA" * offset + data)
    sums = checksums or [int(digital[:, k].sum()) & 0xFFFF for k in range(channels)]
    lines = [f"rec {channels} 360 {samples}"]
    for k in range(channels):
        spec = f"{fmt}+{offset}" if offset else f"{fmt}"
        lines.append(f"rec.dat {spec} {gains[k]}({baselines[k]})/mV 12 0 0 "
                     f"{sums[k] - 65536 if sums[k] > 32767 else sums[k]} 0 lead{k}")
    (tmp_path / "rec.hea").write_text("# written by the test\n" + "\n".join(lines) + "\n")
    return tmp_path / "rec"


@pytest.mark.parametrize("fmt,offset", [(16, 0), (16, 24), (212, 0)])
def test_wfdb_physical_values(tmp_path, fmt, offset):
    rng = np.random.default_rng(1)
    bound = 2047 if fmt == 212 else 32767
    digital = rng.integers(-bound, bound, size=(101, 3))  # odd count: 212 ends mid-triple
    digital[5, 1] = -bound - 1  # the format's "invalid sample" code
    gains, baselines = [200.0, 100.5, 1000.0], [0, -12, 7]
    wave = read_wfdb(_write_record(tmp_path, digital, fmt, gains, baselines, offset))
    expected = (digital - np.asarray(baselines)) / np.asarray(gains)
    expected[5, 1] = np.nan
    np.testing.assert_allclose(wave.signal, expected, rtol=0, atol=1e-12)
    assert wave.rate == 360.0 and wave.channels == ("lead0", "lead1", "lead2")
    assert wave.units == ("mV",) * 3


def test_wfdb_bad_checksum_and_unsupported_format(tmp_path):
    digital = np.arange(20).reshape(10, 2)
    record = _write_record(tmp_path, digital, 16, [200, 200], [0, 0], checksums=[1, 2])
    with pytest.raises(WaveformError, match="checksum"):
        read_wfdb(record)
    header = tmp_path / "rec.hea"
    header.write_text(header.read_text().replace("rec.dat 16 ", "rec.dat 80 "))
    with pytest.raises(WaveformError, match="format 80 is not supported") as info:
        read_wfdb(record)
    assert info.value.path == str(header)


def test_npy(tmp_path):
    array = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    wave = read_npy(tmp_path / "x.npy", rate=500)
    np.testing.assert_array_equal(wave.signal, array.astype(np.float64))
    assert wave.rate == 500.0 and len(wave.channels) == 4


def _tone(freq, rate, seconds, phase=0.3):
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t + phase)


def test_resample_keeps_in_band_content_and_filters_what_would_alias():
    rate, target = 500.0, 100.0
    x = np.stack([_tone(7.0, rate, 4), _tone(7.0, rate, 4) + _tone(180.0, rate, 4)], axis=1)
    y = resample(x, rate, target)
    expected = _tone(7.0, target, 4)
    assert y.shape == (len(expected), 2)
    middle = slice(50, -50)  # away from the filter's edge transients
    np.testing.assert_allclose(y[middle, 0], expected[middle], atol=0.02)
    np.testing.assert_allclose(y[middle, 1], expected[middle], atol=0.02)
    naive = x[::5, 1]  # decimation without a filter folds 180 Hz onto 20 Hz
    assert np.abs(naive[middle] - expected[middle]).max() > 0.5


@pytest.mark.parametrize("freq", [0.2, 5.0, 20.0, 120.0])
def test_bandpass_gain_is_the_squared_filter_response(freq):
    rate, low, high = 500.0, 0.5, 40.0
    x = _tone(freq, rate, 40)[:, None]
    y = bandpass(x, rate, low, high)
    sos = sps.butter(4, [low, high], btype="bandpass", fs=rate, output="sos")
    _, h = sps.sosfreqz(sos, worN=[freq], fs=rate)
    middle = slice(len(x) // 4, -len(x) // 4)
    np.testing.assert_allclose(y[middle, 0], np.abs(h[0]) ** 2 * x[middle, 0], atol=2e-3)


def test_baseline_wander_is_removed():
    rate = 250.0
    ecg_like = _tone(8.0, rate, 60)
    drift = 2.0 * _tone(0.05, rate, 60, phase=1.0) + 1.5
    y = remove_baseline_wander((ecg_like + drift)[:, None], rate)[:, 0]
    middle = slice(len(y) // 4, -len(y) // 4)
    np.testing.assert_allclose(y[middle], ecg_like[middle], atol=0.01)


def test_normalize_leads():
    x = np.random.default_rng(3).normal(5, 3, size=(200, 12))
    expected = (x - x.mean(axis=0)) / x.std(axis=0)
    np.testing.assert_allclose(normalize_leads(x), expected, atol=1e-9)


def test_crop_or_pad():
    x = np.arange(30.0).reshape(10, 3)
    np.testing.assert_array_equal(crop_or_pad(x, 4), x[3:7])
    np.testing.assert_array_equal(crop_or_pad(x, 4, where="start"), x[:4])
    padded = crop_or_pad(x, 13)
    np.testing.assert_array_equal(padded[:10], x)
    np.testing.assert_array_equal(padded[10:], np.zeros((3, 3)))


def test_power_spectrogram_equals_scipy_stft():
    x = np.random.default_rng(4).normal(size=(1000, 2))
    ours = power_spectrogram(x, n_fft=128, hop=32)
    window = sps.get_window("hann", 128)
    _, _, z = sps.stft(x.T, window=window, nperseg=128, noverlap=96, boundary=None, padded=False)
    np.testing.assert_allclose(ours, np.abs(z * window.sum()) ** 2, rtol=1e-9, atol=1e-9)


def test_log_mel_peaks_at_the_tone():
    rate, tone = 500.0, 60.0
    x = _tone(tone, rate, 4)[:, None]
    features = log_mel_spectrogram(x, rate, n_fft=256, hop=64, n_mels=24)
    bank = mel_filterbank(rate, 256, 24)
    assert features.shape == (1, 24, (len(x) - 256) // 64 + 1) and features.dtype == np.float32
    bins = np.fft.rfftfreq(256, 1 / rate)
    expected_band = np.argmax(bank[:, np.argmin(np.abs(bins - tone))])
    assert np.all(features[0].argmax(axis=0) == expected_band)
