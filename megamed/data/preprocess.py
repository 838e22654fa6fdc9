"""Preprocessing of decoded studies into the arrays stored in shards: a CT/MR series into
windowed, resized channels, and ECG/EEG signals into fixed-length, filtered float16 arrays.

`PreprocessConfig` holds every parameter; its dict (and the sha256 of that dict) go into the
shard manifest so a loader can refuse shards made with other settings. `PRESETS` names ready
configs (`--profile demo`, ...).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from megamed.data import dicom, waveform


class PreprocessError(ValueError):
    """A decoded input the preprocessing cannot use (the caller names the file)."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Image: CT windows (names of `dicom.WINDOW_PRESETS`) become channels; MR gets one
    channel scaled between two percentiles of the volume. `image_mode` "2d" keeps the
    series' middle slice ([channels, size, size]); "3d" resamples the whole series to
    [channels, depth, size, size]. Waveforms: resampled to `*_rate_hz`, band-passed,
    normalised per lead, cut or zero-padded to `*_seconds`, leads cut or zero-padded to
    `*_leads`."""

    ct_windows: tuple[str, ...] = ("soft_tissue", "lung", "bone")
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    image_mode: str = "2d"
    image_size: int = 256
    depth: int = 32
    ecg_rate_hz: float = 500.0
    ecg_seconds: float = 10.0
    ecg_leads: int = 12
    ecg_band_hz: tuple[float, float] = (0.5, 100.0)
    eeg_rate_hz: float = 256.0
    eeg_seconds: float = 10.0
    eeg_leads: int = 19
    eeg_band_hz: tuple[float, float] = (0.5, 70.0)

    def __post_init__(self):
        unknown = [w for w in self.ct_windows if w not in dicom.WINDOW_PRESETS]
        if unknown or not self.ct_windows:
            raise ValueError(f"ct_windows {unknown or '()'}: expected names from "
                             f"{sorted(dicom.WINDOW_PRESETS)}")
        if self.image_mode not in ("2d", "3d"):
            raise ValueError(f"image_mode is {self.image_mode!r}; expected '2d' or '3d'")
        for kind in ("ecg", "eeg"):
            low, high = getattr(self, f"{kind}_band_hz")
            rate = getattr(self, f"{kind}_rate_hz")
            if not 0 < low < high < rate / 2:
                raise ValueError(f"{kind}_band_hz ({low}, {high}) must satisfy 0 < low < high "
                                 f"< {kind}_rate_hz / 2 = {rate / 2}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def hash(self) -> str:
        """sha256 hex of the sorted-key JSON of `to_dict()` (the manifest's preprocess_hash)."""
        return config_hash(self.to_dict())

    def length(self, kind: str) -> int:
        return int(round(getattr(self, f"{kind}_rate_hz") * getattr(self, f"{kind}_seconds")))


def config_hash(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


PRESETS: dict[str, PreprocessConfig] = {
    "demo": PreprocessConfig(),
    "ct-3d": PreprocessConfig(image_mode="3d", image_size=128, depth=64),
    "ct-512": PreprocessConfig(image_size=512),
}


def preset(name: str) -> PreprocessConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preprocessing profile {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]


def for_encoders(encoders: dict, base: PreprocessConfig = PreprocessConfig()) -> PreprocessConfig:
    """The preprocessing whose arrays a model's encoders take ({modality: EncoderConfig},
    `ModelConfig.encoders()`): image channels = the first CT windows of `base`, "3d" for a
    [D, H, W] shape (depth D), size H (square only); waveform leads = channels and samples =
    shape[0], keeping `base`'s duration (the rate follows, the band's top is lowered below
    0.4 x rate where needed). configs/demo.yaml's [2, 8, 32, 32] image and 12 x 256 ECG give
    soft-tissue and lung windows on 8 x 32 x 32 voxels and a 10 s ECG at 25.6 Hz."""
    values: dict = {}
    image = encoders.get("image")
    if image is not None:
        shape = tuple(image.shape)
        if shape[-1] != shape[-2] or image.channels > len(base.ct_windows):
            dims = ", ".join(map(str, (image.channels, *shape)))
            raise ValueError(f"image encoder input [{dims}]: the shards hold square slices and at most "
                             f"{len(base.ct_windows)} CT windows {base.ct_windows}")
        values.update(ct_windows=base.ct_windows[:image.channels], image_size=shape[-1],
                      image_mode="3d" if len(shape) == 3 else "2d",
                      depth=shape[0] if len(shape) == 3 else base.depth)
    for kind in ("ecg", "eeg"):
        e = encoders.get(kind)
        if e is None:
            continue
        seconds = getattr(base, f"{kind}_seconds")
        rate = e.shape[0] / seconds
        low, high = getattr(base, f"{kind}_band_hz")
        values.update({f"{kind}_leads": e.channels, f"{kind}_rate_hz": rate,
                       f"{kind}_band_hz": (low, min(high, round(0.4 * rate, 3)))})
    return dataclasses.replace(base, **values)


def array_shapes(config: PreprocessConfig) -> dict:
    """{modality: shape} of the arrays shards made with `config` hold (an MR image has one
    channel where a CT has one per window)."""
    size = (config.image_size,) * 2
    depth = (config.depth,) if config.image_mode == "3d" else ()
    image = (len(config.ct_windows), *depth, *size)
    return {"image": image, "ecg": (config.ecg_leads, config.length("ecg")),
            "eeg": (config.eeg_leads, config.length("eeg"))}


# ---------------------------------------------------------------- images

def _unit_range(volume: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """MR has no absolute scale: map [p_low, p_high] of this volume to [0, 1], clipped."""
    low, high = np.percentile(volume, percentiles)
    scale = np.float32(1.0 / (high - low)) if high > low else np.float32(0.0)
    return np.clip((volume - np.float32(low)) * scale, 0.0, 1.0)


def image_channels(volume: np.ndarray, spacing, modality: str | None,
                   config: PreprocessConfig) -> tuple[np.ndarray, list[str]]:
    """volume [slices, rows, cols] after the Modality LUT (HU for CT), spacing (slice, row,
    col) mm -> float16 [channels, size, size] ("2d") or [channels, depth, size, size] ("3d"),
    values in [0, 1], and the channel names."""
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise PreprocessError(f"expected a [slices, rows, cols] volume, got {volume.shape}")
    spacing = tuple(float(s) if np.isfinite(s) and s > 0 else 1.0 for s in spacing)
    size = config.image_size
    if config.image_mode == "2d":
        values, _ = dicom.resample(volume[volume.shape[0] // 2], spacing[1:], size=(size, size))
    else:
        values, _ = dicom.resample(volume, spacing, size=(config.depth, size, size))
    if modality == "CT":
        channels = [dicom.window(values, *dicom.WINDOW_PRESETS[w]) for w in config.ct_windows]
        names = list(config.ct_windows)
    else:
        channels, names = [_unit_range(values, config.mr_percentiles)], ["percentile"]
    return np.stack(channels).astype(np.float16), names


# ---------------------------------------------------------------- waveforms

def waveform_leads(signal: np.ndarray, rate: float, kind: str,
                   config: PreprocessConfig) -> np.ndarray:
    """signal [samples, channels] at `rate` Hz -> float16 [leads, samples] at the config's
    rate and length for `kind` ("ecg" | "eeg"): invalid samples (NaN) set to 0, resampled,
    band-passed (zero phase), each lead to zero mean / unit deviation, centre-cropped or
    zero-padded; extra leads dropped, missing ones zero."""
    target = getattr(config, f"{kind}_rate_hz")
    low, high = getattr(config, f"{kind}_band_hz")
    if signal.ndim != 2 or signal.shape[0] < 2:
        raise PreprocessError(f"expected [samples, channels] with at least 2 samples, "
                              f"got {signal.shape}")
    if not np.isfinite(rate) or rate <= 0:
        raise PreprocessError(f"sampling rate must be positive, got {rate}")
    values = np.nan_to_num(signal.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if rate != target:
        values = waveform.resample(values, rate, target)
    if values.shape[0] > 27:  # sosfiltfilt's padding needs 3 x (2 x order + 1) samples
        values = waveform.bandpass(values, target, low, high)
    values = waveform.normalize_leads(values)
    values = waveform.crop_or_pad(values, config.length(kind))
    leads = getattr(config, f"{kind}_leads")
    out = np.zeros((leads, values.shape[0]), np.float16)
    kept = min(leads, values.shape[1])
    out[:kept] = values[:, :kept].T
    return out
