"""Physiological waveforms (12-lead ECG, EEG, ...) for the data pipeline: read DICOM Waveform,
WFDB (.hea + .dat, formats 16 and 212) and .npy; resample with an anti-aliasing filter,
band-pass, remove baseline wander, normalise per lead, crop or pad to a fixed length, and
compute log-mel spectrograms.

Signals are float64 arrays [samples, channels] in physical units (e.g. microvolts), with
the sampling rate in Hz alongside. Filters come from scipy.signal (a runtime dependency of
this module). DICOM files are parsed by the C++ extension through megamed.data.dicom.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import signal as sps

from megamed.data.dicom import DicomError, Source, read_header


class WaveformError(ValueError):
    """A waveform file that cannot be used: `path` and `reason`."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Waveform:
    """`signal` [samples, channels] float64 in `units` per channel; `rate` in Hz."""

    signal: np.ndarray
    rate: float
    channels: tuple[str, ...]
    units: tuple[str, ...]


# ---------------------------------------------------------------- DICOM Waveform (PS3.3 C.10.9)

_WAVEFORM_SEQUENCE = 0x54000100
_CHANNEL_DEFINITIONS = 0x003A0200
# PS3.3 C.10.9.1.5: Waveform Sample Interpretation x Waveform Bits Allocated -> sample type.
_SAMPLE_TYPES = {("SB", 8): "i1", ("UB", 8): "u1", ("MB", 8): "u1", ("AB", 8): "u1",
                 ("SS", 16): "i2", ("US", 16): "u2", ("SL", 32): "i4", ("UL", 32): "u4",
                 ("SV", 64): "i8", ("UV", 64): "u8"}
_BIG_ENDIAN = "1.2.840.10008.1.2.2"


def _single(item: dict, tag: int) -> tuple[str, object]:
    """(VR, value) of an element that must hold a value: the first of several values; a
    ValueError for a sequence or an empty value (a hostile file may put either anywhere)."""
    vr, value = item[tag]
    if isinstance(value, list):
        if not value or isinstance(value[0], dict):
            raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) holds "
                             f"{'a sequence' if value else 'no value'}, expected a value")
        value = value[0]
    return vr, value


def _number(item: dict, tag: int, width: str, default=None):
    """A US/UL value, or a DS value, whether the file gave its VR (explicit) or not
    (implicit VR arrives as "UN" bytes, always little endian)."""
    if tag not in item:
        return default
    vr, value = _single(item, tag)
    if isinstance(value, bytes):
        value = (value.decode("ascii").strip(" \x00").split("\\")[0] if width == "DS"
                 else int(np.frombuffer(value, "<" + width, 1)[0]))
    if isinstance(value, str):
        value = float(value) if width == "DS" else int(value)
    if width == "DS":
        return float(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is {vr} {value!r}, expected an integer")
    return value


def _text(item: dict, tag: int, default: str = "") -> str:
    if tag not in item:
        return default
    vr, value = _single(item, tag)
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    return str(value)


def _sequence(item: dict, tag: int) -> list[dict]:
    if tag not in item:
        return []
    vr, value = item[tag]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is {vr}, expected a sequence")
    return value


def _multiplex_group(header: dict, index: int, name: str) -> tuple[dict, np.ndarray]:
    groups = _sequence(header, _WAVEFORM_SEQUENCE)
    if not groups:
        raise DicomError(name, "no Waveform Sequence (5400,0100): not a waveform file")
    if not 0 <= index < len(groups):
        raise DicomError(name, f"multiplex group {index} requested, the file has {len(groups)}")
    group = groups[index]
    channels = _number(group, 0x003A0005, "u2")
    samples = _number(group, 0x003A0010, "u4")
    bits = _number(group, 0x54001004, "u2")
    interpretation = _text(group, 0x54001006)
    if None in (channels, samples, bits) or 0x54001010 not in group:
        raise DicomError(name, f"multiplex group {index} lacks channels, samples, bits "
                               "allocated or Waveform Data (PS3.3 C.10.9.1)")
    if (interpretation, bits) not in _SAMPLE_TYPES:
        raise DicomError(name, f"Waveform Sample Interpretation {interpretation!r} with "
                               f"{bits} bits allocated is not a PS3.3 C.10.9.1.5 combination")
    byte_order = ">" if _text(header, 0x00020010) == _BIG_ENDIAN else "<"
    dtype = np.dtype(byte_order + _SAMPLE_TYPES[(interpretation, bits)])
    data = group[0x54001010][1]
    if not isinstance(data, bytes):
        raise DicomError(name, f"Waveform Data of multiplex group {index} is {group[0x54001010][0]} "
                               "holding no bytes (PS3.3 C.10.9.1)")
    if len(data) < samples * channels * dtype.itemsize:
        raise DicomError(name, f"Waveform Data has {len(data)} bytes, {samples} samples x "
                               f"{channels} channels x {bits} bits need "
                               f"{samples * channels * dtype.itemsize}")
    # PS3.3 C.10.9.1.3: samples are interleaved, channel fastest.
    raw = np.frombuffer(data, dtype, samples * channels).reshape(samples, channels)
    return group, raw


def _physical(group: dict, raw: np.ndarray) -> np.ndarray:
    """stored x Channel Sensitivity x Correction Factor + Channel Baseline, per channel
    (PS3.3 C.10.9.1.4), in pydicom's order of operations."""
    out = raw.astype(np.float64)
    for channel, definition in enumerate(_sequence(group, _CHANNEL_DEFINITIONS)[:out.shape[1]]):
        sensitivity = _number(definition, 0x003A0210, "DS", 1.0)
        correction = _number(definition, 0x003A0212, "DS", 1.0)
        baseline = _number(definition, 0x003A0213, "DS", 0.0)
        out[:, channel] = out[:, channel] * sensitivity * correction + baseline
    return out


def _labels(group: dict, channels: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Channel Label, else the Channel Source code meaning; units from the Channel
    Sensitivity Units code value (UCUM, e.g. "uV")."""
    definitions = _sequence(group, _CHANNEL_DEFINITIONS)
    names, units = [], []
    for k in range(channels):
        definition = definitions[k] if k < len(definitions) else {}
        source = _sequence(definition, 0x003A0208)
        unit = _sequence(definition, 0x003A0211)
        names.append(_text(definition, 0x003A0203) or
                     (_text(source[0], 0x00080104) if source else f"channel {k}"))
        units.append(_text(unit[0], 0x00080100) if unit else "")
    return tuple(names), tuple(units)


def read_dicom_waveform(path_or_bytes: Source, index: int = 0, *, memory_limit: int | None = None) -> Waveform:
    """Multiplex group `index` of a DICOM Waveform (PS3.3 C.10.9) in physical units, with its
    rate (Sampling Frequency), channel labels and units. `memory_limit`: as in
    megamed.data.dicom.read_header."""
    header = read_header(path_or_bytes, memory_limit=memory_limit)
    name = str(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else "<bytes>"
    try:
        group, raw = _multiplex_group(header, index, name)
        names, units = _labels(group, raw.shape[1])
        rate = _number(group, 0x003A001A, "DS")
        if rate is None:
            raise DicomError(name, f"multiplex group {index} has no Sampling Frequency")
        return Waveform(_physical(group, raw), float(rate), names, units)
    except DicomError:
        raise
    except (ValueError, UnicodeDecodeError) as e:  # a value of the wrong form
        raise DicomError(name, f"malformed waveform attributes: {e}") from e


def waveform_array(path_or_bytes: Source, index: int = 0) -> np.ndarray:
    """Multiplex group `index` in physical units, float64 [samples, channels]; equals
    pydicom's `Dataset.waveform_array(index)`."""
    return read_dicom_waveform(path_or_bytes, index).signal


# ---------------------------------------------------------------- WFDB (PhysioNet header(5), signal(5))

@dataclass(frozen=True)
class _WfdbSignal:
    file: str
    format: int
    offset: int
    gain: float
    baseline: int
    units: str
    checksum: int | None
    name: str


def _parse_signal_line(fields: list[str], header: Path) -> _WfdbSignal:
    file, spec = fields[0], fields[1]
    fmt, _, offset = spec.partition("+")
    if "x" in fmt or ":" in fmt:
        raise WaveformError(header, f"signal spec {spec!r}: multiple samples per frame and skew "
                                    "are not supported")
    if fmt not in ("16", "212"):
        raise WaveformError(header, f"WFDB format {fmt} is not supported (formats 16 and 212 are)")
    gain_field = fields[2] if len(fields) > 2 else "200"
    gain_text, _, units = gain_field.partition("/")
    gain_text, _, baseline_text = gain_text.partition("(")
    adc_zero = int(fields[4]) if len(fields) > 4 else 0
    gain = float(gain_text) or 200.0  # header(5): a gain of 0 means 200 (uncalibrated)
    baseline = int(baseline_text.rstrip(")")) if baseline_text else adc_zero
    checksum = int(fields[6]) if len(fields) > 6 else None
    return _WfdbSignal(file, int(fmt), int(offset or 0), gain, baseline, units or "mV", checksum,
                       " ".join(fields[8:]) if len(fields) > 8 else f"signal {fields[0]}")


def _unpack_212(data: bytes, count: int) -> np.ndarray:
    """signal(5) format 212: two 12-bit two's-complement samples in three bytes; the first in
    byte 0 and the low nibble of byte 1, the second in the high nibble of byte 1 and byte 2."""
    needed = (count + 1) // 2 * 3
    packed = data[:needed].ljust(needed, b"\0")  # an odd count may end inside the last triple
    triples = np.frombuffer(packed, np.uint8).reshape(-1, 3).astype(np.int32)
    first = triples[:, 0] | (triples[:, 1] & 0x0F) << 8
    second = triples[:, 2] | (triples[:, 1] & 0xF0) << 4
    samples = np.stack([first, second], axis=1).reshape(-1)[:count]
    return np.where(samples >= 2048, samples - 4096, samples)


def read_wfdb(record: str | os.PathLike) -> Waveform:
    """A single-segment WFDB record: `record` is the .hea file or its path without suffix.
    Invalid samples (-32768 in format 16, -2048 in 212) become NaN; physical value =
    (digital - baseline) / gain."""
    header = Path(record).with_suffix(".hea")
    try:
        lines = [ln.split("#")[0].split() for ln in header.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise WaveformError(header, f"cannot read the header: {e}") from e
    lines = [ln for ln in lines if ln]
    try:
        name, count, *rest = lines[0]
        if "/" in name:
            raise WaveformError(header, "multi-segment records are not supported")
        rate = float(rest[0].split("/")[0]) if rest else 250.0
        length = int(rest[1]) if len(rest) > 1 else None
        signals = [_parse_signal_line(fields, header) for fields in lines[1:1 + int(count)]]
        if len(signals) != int(count):
            raise WaveformError(header, f"header declares {count} signals, describes {len(signals)}")
    except (IndexError, ValueError) as e:
        if isinstance(e, WaveformError):
            raise
        raise WaveformError(header, f"malformed header: {e}") from e
    columns = {}
    for file in dict.fromkeys(s.file for s in signals):  # signals of one file are interleaved
        group = [i for i, s in enumerate(signals) if s.file == file]
        first = signals[group[0]]
        if any(signals[i].format != first.format for i in group):
            raise WaveformError(header, f"{file}: mixed formats in one file are not supported")
        path = header.parent / file
        try:
            data = path.read_bytes()[first.offset:]
        except OSError as e:
            raise WaveformError(path, f"cannot read the signal file: {e.strerror}") from e
        per_sample = 2 if first.format == 16 else 1.5
        available = int(len(data) / per_sample) // len(group)
        frames = available if length is None else length
        if frames > available:
            raise WaveformError(path, f"holds {available} samples per signal, the header says {frames}")
        count_needed = frames * len(group)
        digital = (np.frombuffer(data, "<i2", count_needed).astype(np.int32) if first.format == 16
                   else _unpack_212(data, count_needed)).reshape(frames, len(group))
        for column, i in enumerate(group):
            columns[i] = digital[:, column]
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise WaveformError(header, f"signal files hold different numbers of samples: {sorted(lengths)}")
    out = np.empty((lengths.pop(), len(signals)))
    for i, s in enumerate(signals):
        digital = columns[i]
        if s.checksum is not None and length is not None and int(digital.sum()) & 0xFFFF != s.checksum & 0xFFFF:
            raise WaveformError(header.parent / s.file, f"checksum of {s.name!r} is "
                                f"{int(digital.sum()) & 0xFFFF}, the header says {s.checksum & 0xFFFF}")
        invalid = digital == (-32768 if s.format == 16 else -2048)
        out[:, i] = np.where(invalid, np.nan, (digital - s.baseline) / s.gain)
    return Waveform(out, rate, tuple(s.name for s in signals), tuple(s.units for s in signals))


def read_npy(path: str | os.PathLike, rate: float, units: str = "") -> Waveform:
    """A [samples, channels] (or [samples]) array saved with numpy.save, at `rate` Hz."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise WaveformError(path, f"cannot load the array: {e}") from e
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise WaveformError(path, f"expected a numeric [samples, channels] array, got "
                                  f"{array.dtype} {array.shape}")
    channels = array.shape[1]
    return Waveform(array.astype(np.float64), float(rate),
                    tuple(f"channel {k}" for k in range(channels)), (units,) * channels)


# ---------------------------------------------------------------- preprocessing, [samples, channels]

def resample(signal: np.ndarray, rate: float, target_rate: float) -> np.ndarray:
    """Polyphase resampling to `target_rate` with scipy's Kaiser-windowed FIR anti-aliasing
    low-pass at the lower Nyquist frequency. [samples, channels] -> [samples', channels]."""
    ratio = Fraction(target_rate / rate).limit_denominator(1000)
    return sps.resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)


def bandpass(signal: np.ndarray, rate: float, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (forward-backward, so the magnitude response is the
    filter's squared). Same shape."""
    sos = sps.butter(order, [low, high], btype="bandpass", fs=rate, output="sos")
    return sps.sosfiltfilt(sos, signal, axis=0)


def remove_baseline_wander(signal: np.ndarray, rate: float, cutoff: float = 0.5) -> np.ndarray:
    """Zero-phase second-order Butterworth high-pass at `cutoff` Hz: removes respiration and
    electrode drift below it (0.5 Hz keeps the ECG's lowest content). Same shape."""
    sos = sps.butter(2, cutoff, btype="highpass", fs=rate, output="sos")
    return sps.sosfiltfilt(sos, signal, axis=0)


def normalize_leads(signal: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Each channel to zero mean and unit standard deviation. Same shape."""
    return (signal - signal.mean(axis=0)) / (signal.std(axis=0) + eps)


def crop_or_pad(signal: np.ndarray, length: int, where: str = "center") -> np.ndarray:
    """[samples, channels] -> [length, channels]: longer signals are cut to their centre (or
    start, with where="start"); shorter ones are zero-padded at the end."""
    samples = signal.shape[0]
    if samples >= length:
        start = (samples - length) // 2 if where == "center" else 0
        return signal[start:start + length]
    pad = np.zeros((length - samples,) + signal.shape[1:], dtype=signal.dtype)
    return np.concatenate([signal, pad])


def mel_filterbank(rate: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters on the HTK mel scale, mel = 2595 log10(1 + f / 700), peak 1:
    [n_mels, n_fft // 2 + 1]."""
    fmax = rate / 2 if fmax is None else fmax
    to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    edges = 700.0 * (10 ** (np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


def power_spectrogram(signal: np.ndarray, n_fft: int = 256, hop: int = 64) -> np.ndarray:
    """|STFT|^2 with a periodic Hann window, frames starting every `hop` samples, no padding:
    [samples, channels] -> [channels, n_fft // 2 + 1, frames]."""
    if signal.shape[0] < n_fft:
        raise ValueError(f"signal of {signal.shape[0]} samples is shorter than n_fft={n_fft}")
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft, axis=0)[::hop]
    spectrum = np.fft.rfft(frames * sps.get_window("hann", n_fft), axis=-1)
    return np.abs(spectrum).transpose(1, 2, 0) ** 2


def log_mel_spectrogram(signal: np.ndarray, rate: float, n_fft: int = 256, hop: int = 64,
                        n_mels: int = 32, fmin: float = 0.0, fmax: float | None = None,
                        floor: float = 1e-10) -> np.ndarray:
    """log(mel filterbank . power spectrogram + floor): [samples, channels] ->
    [channels, n_mels, frames], float32."""
    power = power_spectrogram(signal, n_fft, hop)
    mel = np.einsum("mf,cft->cmt", mel_filterbank(rate, n_fft, n_mels, fmin, fmax), power)
    return np.log(mel + floor).astype(np.float32)
