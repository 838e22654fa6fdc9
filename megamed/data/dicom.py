"""DICOM images for the data pipeline: decode, rescale to Hounsfield units, window, resample,
and assemble series into volumes.

The C++ extension `megamed._dicom` (csrc/) parses the file (Part 10 or a bare dataset, in
any of the uncompressed and deflated syntaxes) and decodes native, RLE Lossless and JPEG
Lossless pixel data straight into numpy arrays with the GIL released, one file or a batch on
several threads. JPEG baseline/extended, JPEG-LS and JPEG 2000 frames go to libjpeg, CharLS
and OpenJPEG through pydicom's decoder plugins (`pip install megamed[codecs]`).

Every failure on bad input is a `DicomError(path, reason)`; bytes are named "<bytes>".
That includes hostile input: sequences nest at most MAX_SEQUENCE_DEPTH levels, and each
decode allocates at most `memory_limit` bytes (inflated dataset, header, scratch and the
returned array). The default, None, is AUTO_MEMORY_FACTOR x the image the header describes
+ AUTO_MEMORY_FLOOR; every allocation is further checked against the bytes the file holds
(a deflated dataset inflates no further than its image attributes justify).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

try:
    from megamed import _dicom
except ImportError as _error:  # built without pybind11: say so at the first call
    _dicom = None
    _IMPORT_ERROR = _error

Source = str | os.PathLike | bytes | bytearray | memoryview

# The decoder's bounds (csrc/memory_budget.h, csrc/dicom_parse.h), for callers and docs.
AUTO_MEMORY_FACTOR = getattr(_dicom, "AUTO_MEMORY_FACTOR", None)
AUTO_MEMORY_FLOOR = getattr(_dicom, "AUTO_MEMORY_FLOOR", None)
MAX_SEQUENCE_DEPTH = getattr(_dicom, "MAX_SEQUENCE_DEPTH", None)

# (center, width) in Hounsfield units; common radiology presets.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

# Compressed syntaxes that csrc/ leaves to a maintained codec, called through pydicom's
# decoder plugin for that codec with the frames we split: UID -> (name, plugin, pip packages).
# `pip install megamed[codecs]` (tools/setup_env.sh) installs them all.
_LIBJPEG = ("pylibjpeg", "pylibjpeg and pylibjpeg-libjpeg")
_OPENJPEG = ("pylibjpeg", "pylibjpeg and pylibjpeg-openjpeg")
_CODEC_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline", *_LIBJPEG),
    "1.2.840.10008.1.2.4.51": ("JPEG Extended", *_LIBJPEG),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS Lossless", "pyjpegls", "pyjpegls"),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS Near-Lossless", "pyjpegls", "pyjpegls"),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Lossless", *_OPENJPEG),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", *_OPENJPEG),
    "1.2.840.10008.1.2.4.201": ("HTJ2K Lossless", *_OPENJPEG),
    "1.2.840.10008.1.2.4.202": ("HTJ2K Lossless RPCL", *_OPENJPEG),
    "1.2.840.10008.1.2.4.203": ("HTJ2K", *_OPENJPEG),
}


class DicomError(ValueError):
    """A DICOM file that cannot be used: `path` ("<bytes>" for a buffer) and `reason`."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


def _load(source: Source) -> tuple[bytes | bytearray | memoryview, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source, "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                return f.read(), path
        except OSError as e:
            raise DicomError(path, f"cannot read the file: {e.strerror}") from e
    raise TypeError(f"expected a path or a bytes-like object, got {type(source).__name__}")


def _parse(source: Source, memory_limit: int | None = None, name: str | None = None,
           **parts: bool) -> tuple[dict, str, bytes | bytearray | memoryview]:
    """Parses `source`; with `name`, `source` is the already loaded bytes of that file."""
    if _dicom is None:
        raise ImportError("megamed._dicom is not built (pybind11 was missing at install); "
                          "reinstall with `pip install --no-build-isolation -e .`") from _IMPORT_ERROR
    if memory_limit is not None and (not isinstance(memory_limit, int) or memory_limit < 1):
        raise ValueError(f"memory_limit must be a positive number of bytes or None, got {memory_limit!r}")
    data, name = (source, name) if name else _load(source)
    try:
        return _dicom.read(data, memory_limit=memory_limit or 0, **parts), name, data
    except _dicom.FormatError as e:
        raise DicomError(name, str(e)) from e


def _ybr_full_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """YBR_FULL -> RGB for 8-bit samples [..., 3] (PS3.3 C.7.6.3.1.2, ITU T.871 section 7),
    computed as pydicom does (float32, round half up, clip) so the values agree exactly."""
    ybr_to_rgb = np.asarray([[1.000, 1.000, 1.000],
                             [0.000, -0.114 * 1.772 / 0.587, 1.772],
                             [1.402, -0.299 * 1.402 / 0.587, 0.000]], dtype=np.float32)
    values = pixels.astype(np.float32)
    values -= [0, 128, 128]
    np.matmul(values, ybr_to_rgb, out=values)
    values += 0.5
    np.floor(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _decode_with_codec(parsed: dict, data, name: str) -> np.ndarray:
    """pydicom's `pixel_array` for a syntax in _CODEC_SYNTAXES: pydicom's decoder with the
    codec's plugin, given our encoded frames and attributes (no pydicom Dataset)."""
    uid = parsed["transfer_syntax"]
    if uid not in _CODEC_SYNTAXES:
        raise DicomError(name, f"transfer syntax {uid} is not decodable here or by a codec")
    label, plugin, packages = _CODEC_SYNTAXES[uid]
    try:
        from pydicom.encaps import encapsulate
        from pydicom.pixels.decoders.base import get_decoder
    except ImportError:
        raise DicomError(name, f"{label} ({uid}) is compressed: install pydicom and {packages} "
                               "(pip install megamed[codecs]) to decode it") from None
    if plugin not in get_decoder(uid).available_plugins:
        raise DicomError(name, f"{label} ({uid}) is compressed: install {packages} "
                               "(pip install megamed[codecs]) to decode it")
    a = _parse(data, None, name, pixels=False, attributes=True)[0]["attributes"]
    try:
        return get_decoder(uid).as_array(
            encapsulate(parsed["frames"]), decoding_plugin=plugin, rows=a["Rows"],
            columns=a["Columns"], samples_per_pixel=a["SamplesPerPixel"],
            bits_allocated=a["BitsAllocated"], bits_stored=a["BitsStored"],
            pixel_representation=a["PixelRepresentation"],
            photometric_interpretation=a["PhotometricInterpretation"],
            number_of_frames=a.get("NumberOfFrames") or 1,
            planar_configuration=a.get("PlanarConfiguration", 0))[0]
    except Exception as e:  # any codec failure is a property of this file
        raise DicomError(name, f"{plugin} failed to decode {label}: {e}") from e


def _pixels(parsed: dict, name: str, data, native_order: bool) -> tuple[np.ndarray, str]:
    """The array pydicom's `pixel_array` gives, and its photometric interpretation."""
    pixels, photometric = parsed["pixels"], parsed["photometric"]
    if pixels is None:
        return _decode_with_codec(parsed, data, name), None
    try:
        # pydicom's default `as_rgb`: 8-bit YBR_FULL(_422) is returned as RGB (the decoder
        # has checked that YBR has three samples).
        if photometric in ("YBR_FULL", "YBR_FULL_422") and pixels.dtype == np.uint8:
            pixels, photometric = _ybr_full_to_rgb(pixels), "RGB"
        # pydicom keeps a big-endian syntax's byte order in the dtype (e.g. '>i2').
        if not native_order and not parsed["little_endian"] and pixels.dtype.itemsize > 1:
            pixels = pixels.byteswap().view(pixels.dtype.newbyteorder(">"))
    except MemoryError:
        raise DicomError(name, f"out of memory converting the {pixels.nbytes}-byte array") from None
    return pixels, photometric


def decode_pixels(path_or_bytes: Source, *, memory_limit: int | None = None) -> np.ndarray:
    """Stored pixel values, exactly pydicom's `Dataset.pixel_array` (same shape, dtype and
    values): [rows, cols], [rows, cols, samples], [frames, rows, cols] or
    [frames, rows, cols, samples]; bits above Bits Stored masked or sign-extended
    (PS3.5 8.1.1); 8-bit YBR_FULL / YBR_FULL_422 converted to RGB; big-endian syntaxes keep
    a big-endian dtype, as pydicom's do. `memory_limit`: the most bytes the decode may
    allocate (None: AUTO_MEMORY_FACTOR x the image the header describes + AUTO_MEMORY_FLOOR);
    a file that needs more raises DicomError."""
    parsed, name, data = _parse(path_or_bytes, memory_limit, pixels=True)
    return _pixels(parsed, name, data, native_order=False)[0]


@dataclass(frozen=True)
class DicomImage:
    """Pixels plus the attributes the pipeline uses. `pixels` are stored values in native
    byte order, shaped as in `decode_pixels`; `pixel_spacing` is (row, column) in mm;
    `image_position` the centre of the first pixel in patient coordinates (mm);
    `image_orientation` the row then column direction cosines."""

    pixels: np.ndarray
    path: str
    transfer_syntax_uid: str
    photometric_interpretation: str | None
    modality: str | None
    rows: int
    columns: int
    samples_per_pixel: int
    number_of_frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    rescale_slope: float
    rescale_intercept: float
    window_center: tuple[float, ...]
    window_width: tuple[float, ...]
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, ...] | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    frame_of_reference_uid: str | None
    burned_in_annotation: bool | None


def _tuple(values, length: int, name: str, keyword: str):
    if values is None:
        return None
    if len(values) != length:
        raise DicomError(name, f"{keyword} has {len(values)} values, expected {length}")
    return tuple(values)


def read_image(path_or_bytes: Source, *, memory_limit: int | None = None) -> DicomImage:
    """Decoded pixels and attributes of one DICOM file (see `DicomImage`); `memory_limit`
    as in `decode_pixels`."""
    parsed, name, data = _parse(path_or_bytes, memory_limit, pixels=True, attributes=True)
    return _image(parsed, name, *_pixels(parsed, name, data, native_order=True))


def _image(parsed: dict, name: str, pixels: np.ndarray | None, photometric: str | None) -> DicomImage:
    a = parsed["attributes"]
    burned_in = a.get("BurnedInAnnotation")
    return DicomImage(
        pixels=pixels, path=name,
        transfer_syntax_uid=parsed["transfer_syntax"],
        photometric_interpretation=photometric or a.get("PhotometricInterpretation"),
        modality=a.get("Modality"), rows=a["Rows"], columns=a["Columns"],
        samples_per_pixel=a["SamplesPerPixel"], number_of_frames=a.get("NumberOfFrames") or 1,
        bits_allocated=a["BitsAllocated"], bits_stored=a["BitsStored"],
        pixel_representation=a["PixelRepresentation"],
        rescale_slope=a.get("RescaleSlope", 1.0), rescale_intercept=a.get("RescaleIntercept", 0.0),
        window_center=tuple(a.get("WindowCenter", ())), window_width=tuple(a.get("WindowWidth", ())),
        pixel_spacing=_tuple(a.get("PixelSpacing"), 2, name, "PixelSpacing"),
        slice_thickness=a.get("SliceThickness"),
        image_position=_tuple(a.get("ImagePositionPatient"), 3, name, "ImagePositionPatient"),
        image_orientation=_tuple(a.get("ImageOrientationPatient"), 6, name, "ImageOrientationPatient"),
        sop_class_uid=a.get("SOPClassUID"), sop_instance_uid=a.get("SOPInstanceUID"),
        study_instance_uid=a.get("StudyInstanceUID"), series_instance_uid=a.get("SeriesInstanceUID"),
        frame_of_reference_uid=a.get("FrameOfReferenceUID"),
        burned_in_annotation=None if burned_in is None else burned_in.upper() == "YES",
    )


# Specific Character Set (0008,0005) -> Python codec, for the single-byte and UTF-8 sets
# (PS3.3 C.12.1.1.2); ISO 2022 code extensions fall back to latin-1, which loses no byte.
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1",
             "ISO_IR 101": "iso8859_2", "ISO_IR 144": "iso8859_5", "ISO_IR 127": "iso8859_6",
             "ISO_IR 126": "iso8859_7", "ISO_IR 138": "iso8859_8", "ISO_IR 148": "iso8859_9",
             "ISO_IR 13": "shift_jis", "ISO_IR 166": "tis-620", "ISO_IR 192": "utf-8",
             "GB18030": "gb18030", "GBK": "gbk"}
_NUMBER_VRS = {"US": "u2", "SS": "i2", "UL": "u4", "SL": "i4", "FL": "f4", "FD": "f8",
               "SV": "i8", "UV": "u8"}
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
             "UC", "UI", "UR", "UT"}
_SINGLE_VALUED_TEXT = {"LT", "ST", "UR", "UT"}  # PS3.5 6.4: backslash is not a delimiter


def _header_value(vr: str, value, byte_order: str, codec: str):
    if isinstance(value, list):
        return [_header_items(item, byte_order, codec) for item in value]
    if vr in _NUMBER_VRS:
        numbers = np.frombuffer(value, byte_order + _NUMBER_VRS[vr],
                                len(value) // int(_NUMBER_VRS[vr][1])).tolist()
        return numbers[0] if len(numbers) == 1 else numbers
    if vr in _TEXT_VRS:
        text = value.decode(codec, errors="replace").rstrip(" \x00")
        parts = [text] if vr in _SINGLE_VALUED_TEXT else [p.strip(" \x00") for p in text.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    return value


def _header_items(elements: dict, byte_order: str, codec: str) -> dict:
    return {tag: (vr, _header_value(vr, value, byte_order, codec))
            for tag, (vr, value) in elements.items()}


def read_header(path_or_bytes: Source, *,
                memory_limit: int | None = None) -> dict[int, tuple[str, object]]:
    """Every element but Pixel Data: {tag: (VR, value)}, the tag as 0xGGGGEEEE. Values:
    str (list of str when multi-valued) for text VRs, int/float (list) for binary numbers,
    a list of {tag: (VR, value)} items for sequences, bytes otherwise. Implicit VR files
    carry no VRs, so their elements come back as ("UN", bytes). `memory_limit` as in
    `decode_pixels` (each element counts about 512 bytes)."""
    parsed, name, _ = _parse(path_or_bytes, memory_limit, pixels=False, header=True)
    raw = parsed["header"]
    charset_raw = raw.get(0x00080005, ("", b""))[1]
    charset = charset_raw.decode("ascii", "replace").strip(" \x00").split("\\")[0] \
        if isinstance(charset_raw, bytes) else ""
    byte_order = "<" if parsed["little_endian"] else ">"
    try:
        return _header_items(raw, byte_order, _CHARSETS.get(charset, "latin-1"))
    except MemoryError:
        raise DicomError(name, f"out of memory converting the header's {len(raw)} top-level elements") from None


def rescaled(image: DicomImage) -> np.ndarray:
    """Output of the Modality LUT, slope x stored + intercept (PS3.3 C.11.1.1.2): float32,
    the shape of `image.pixels`."""
    return (image.pixels.astype(np.float32) * np.float32(image.rescale_slope)
            + np.float32(image.rescale_intercept))


def hounsfield(image: DicomImage) -> np.ndarray:
    """CT values in Hounsfield units: float32, the shape of `image.pixels`."""
    if image.modality not in (None, "CT"):
        raise DicomError(image.path, f"Modality is {image.modality}; Hounsfield units are "
                                     "defined for CT only (use rescaled())")
    return rescaled(image)


def window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear VOI window (PS3.3 C.11.2.1.2.1) mapped to [0, 1], float32, same shape: values
    at or below center - 0.5 - (width - 1) / 2 give 0, above center - 0.5 + (width - 1) / 2
    give 1, linear in between."""
    if width < 1:
        raise ValueError(f"window width must be at least 1 (PS3.3 C.11.2.1.2.1), got {width}")
    out = (np.asarray(values, np.float32) - np.float32(center - 0.5)) / np.float32(width - 1)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def apply_window(image: DicomImage, preset: str = "soft_tissue") -> np.ndarray:
    """`image` rescaled and windowed to [0, 1] with a preset of WINDOW_PRESETS or, with
    preset="file", the file's first Window Center / Width. float32, shape of the pixels."""
    if preset == "file":
        if not image.window_center or not image.window_width:
            raise DicomError(image.path, "no Window Center / Window Width in the file; "
                                         f"use one of {sorted(WINDOW_PRESETS)}")
        center, width = image.window_center[0], image.window_width[0]
    elif preset in WINDOW_PRESETS:
        center, width = WINDOW_PRESETS[preset]
    else:
        raise ValueError(f"unknown window preset {preset!r}; expected 'file' or one of "
                         f"{sorted(WINDOW_PRESETS)}")
    return window(rescaled(image), center, width)


def resample(values: np.ndarray, spacing: tuple[float, ...], target_spacing=None,
             size=None) -> tuple[np.ndarray, tuple[float, ...]]:
    """(Bi/tri)linear resampling of an image [rows, cols] or volume [slices, rows, cols] whose
    samples are `spacing` mm apart (one value per axis). Give `target_spacing` (mm per axis)
    or `size` (samples per axis). The first and last samples stay where they were, so the
    achieved spacing, returned with the float32 result, is extent / (size - 1): as close to
    the target as whole samples allow."""
    import torch  # only this function needs it; decoding stays torch-free

    values = np.asarray(values, dtype=np.float32)
    if values.ndim not in (2, 3) or len(spacing) != values.ndim:
        raise ValueError(f"expected [rows, cols] or [slices, rows, cols] with one spacing per "
                         f"axis, got shape {values.shape} and spacing {tuple(spacing)}")
    if (target_spacing is None) == (size is None):
        raise ValueError("give exactly one of target_spacing and size")
    extent = [(n - 1) * s for n, s in zip(values.shape, spacing)]
    if size is None:
        size = [max(1, round(e / t) + 1) for e, t in zip(extent, target_spacing)]
    size = tuple(int(n) for n in size)
    achieved = tuple(e / (n - 1) if n > 1 else float(s)
                     for e, n, s in zip(extent, size, spacing))
    mode = "bilinear" if values.ndim == 2 else "trilinear"
    out = torch.nn.functional.interpolate(torch.from_numpy(values)[None, None], size=size,
                                          mode=mode, align_corners=True)
    return out[0, 0].numpy(), achieved


@dataclass(frozen=True)
class Series:
    """A 3D volume from single-frame slices. `volume` [slices, rows, cols] float32 after the
    Modality LUT (HU for CT), slices ordered along the normal of the image plane;
    `spacing` (slice, row, column) mm; `origin` the first slice's Image Position;
    `paths` the files in volume order."""

    volume: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    orientation: tuple[float, ...]
    series_instance_uid: str | None
    paths: tuple[str, ...]


def _check_same(images: list[DicomImage], attribute: str, close: bool = False) -> None:
    first = getattr(images[0], attribute)
    for image in images[1:]:
        value = getattr(image, attribute)
        same = (np.allclose(value, first, atol=1e-4) if close and None not in (value, first)
                else value == first)
        if not same:
            raise DicomError(image.path, f"mixed series: {attribute} is {value}, but "
                                         f"{images[0].path} has {first}")


def _decode_batch(loaded: list[tuple], threads: int, out=None, pin_memory: bool = False):
    """decode_pixels_batch on files already loaded as (bytes, name)."""
    if not loaded:
        raise ValueError("a batch needs at least one source")
    first = _pixels(*_parse(loaded[0][0], None, loaded[0][1], pixels=True), native_order=True)[0]
    shape = (len(loaded), *first.shape)
    if out is None and pin_memory:
        import torch  # the pinned buffer is the only use of torch here
        out = torch.from_numpy(first[:0]).new_empty(shape, pin_memory=torch.cuda.is_available())
    target = np.empty(shape, first.dtype) if out is None else _writable_view(out)
    if target.shape != shape or target.dtype != first.dtype:
        raise ValueError(f"out is {target.dtype} {target.shape}; the batch needs {first.dtype} {shape}")
    target[0] = first
    results = _dicom.decode_batch([data for data, _ in loaded[1:]], target[1:], first.nbytes,
                                  first.dtype.itemsize, first.dtype.kind == "i", max(1, threads))
    for i, (error, photometric) in enumerate(results, start=1):
        data, name = loaded[i]
        if error is None:
            if photometric in ("YBR_FULL", "YBR_FULL_422") and target.dtype == np.uint8:
                target[i] = _ybr_full_to_rgb(target[i])
            continue
        parsed = _parse(data, None, name, pixels=True)[0]
        if parsed["pixels"] is not None:  # decoded here, yet not like the first file
            raise DicomError(name, error)
        pixels = _decode_with_codec(parsed, data, name)
        if pixels.shape != first.shape or pixels.dtype != first.dtype:
            raise DicomError(name, f"pixels are {pixels.dtype} {pixels.shape}, unlike the first "
                                   f"file of the batch ({first.dtype} {first.shape})")
        target[i] = pixels
    return target if out is None else out


def _writable_view(out) -> np.ndarray:
    """A numpy view of `out`: a numpy array, or a CPU torch tensor (pinned or not)."""
    array = out if isinstance(out, np.ndarray) else out.numpy()
    if not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError("out must be a writable C-contiguous array or CPU tensor")
    return array


def decode_pixels_batch(sources, threads: int = 1, out=None, pin_memory: bool = False):
    """Stored pixel values of many files of one shape and dtype, [len(sources), *one image's
    shape] in native byte order (otherwise as `decode_pixels`), decoded on `threads` C++
    threads with the GIL released (native, RLE and JPEG Lossless; the codec syntaxes one
    after another). `out`: a numpy array or CPU torch tensor of that shape and dtype to fill
    and return; `pin_memory=True` returns a new torch tensor, in pinned memory when CUDA is
    available. A file whose pixels differ from the first's raises DicomError naming it."""
    return _decode_batch([_load(s) for s in sources], threads, out, pin_memory)


def _series_volume(loaded: list[tuple], images: list[DicomImage], threads: int) -> np.ndarray:
    """[slices, rows, cols] float32 after each slice's Modality LUT, computed as rescaled()
    does (float32 multiply, then add): the C++ threads decode each slice and write its
    rescaled values straight into the volume; codec syntaxes are decoded here instead."""
    first = images[0]
    item_size = 1 if first.bits_allocated == 1 else first.bits_allocated // 8
    volume = np.empty((len(images), first.rows, first.columns), np.float32)
    slopes = np.asarray([image.rescale_slope for image in images], np.float32)
    intercepts = np.asarray([image.rescale_intercept for image in images], np.float32)
    results = _dicom.decode_batch([data for data, _ in loaded], volume, first.rows * first.columns * item_size,
                                  item_size, first.pixel_representation == 1 and first.bits_allocated > 1,
                                  max(1, threads), slopes, intercepts)
    for i, (error, _) in enumerate(results):
        if error is None:
            continue
        data, name = loaded[i]
        parsed = _parse(data, None, name, pixels=True)[0]
        if parsed["pixels"] is not None:  # decoded here, yet not like the first slice
            raise DicomError(name, error)
        pixels = _decode_with_codec(parsed, data, name)
        if pixels.shape != volume.shape[1:]:
            raise DicomError(name, f"pixels are {pixels.shape}, the slices {volume.shape[1:]}")
        volume[i] = pixels
        volume[i] *= slopes[i]
        volume[i] += intercepts[i]
    return volume


def read_series(paths, threads: int = 1) -> Series:
    """Reads the slices of one series and stacks them in order along the slice normal
    (row cosines x column cosines, PS3.3 C.7.6.2.1.1), decoding them on `threads` C++
    threads straight into one float32 volume. Rejects, naming the file: a mix of series,
    orientations, sizes, pixel spacings or sample types; multi-frame or colour files;
    missing geometry; two slices at one position; and uneven gaps (a missing slice)."""
    loaded = [_load(p) for p in paths]
    images = [_image(_parse(data, None, name, pixels=False, attributes=True)[0], name, None, None)
              for data, name in loaded]
    if not images:
        raise ValueError("read_series needs at least one path")
    position = {id(image): i for i, image in enumerate(images)}
    ordered, spacing = order_slices(images)
    loaded = [loaded[position[id(image)]] for image in ordered]
    return _series(ordered, spacing, _series_volume(loaded, ordered, threads))


def stack_series(images: list[DicomImage]) -> Series:
    """`read_series` for images already read (pixels included): checked, ordered, stacked."""
    images, spacing = order_slices(images)
    return _series(images, spacing, np.stack([rescaled(image) for image in images]))


def _series(images: list[DicomImage], spacing: tuple, volume: np.ndarray) -> Series:
    return Series(volume=volume, spacing=spacing, origin=images[0].image_position,
                  orientation=tuple(float(x) for x in images[0].image_orientation),
                  series_instance_uid=images[0].series_instance_uid,
                  paths=tuple(image.path for image in images))


def order_slices(images: list[DicomImage]) -> tuple[list[DicomImage], tuple[float, float, float]]:
    """The checks of `read_series` without building the volume: the images in order along
    the slice normal and the (slice, row, column) spacing in mm (a caller that needs one
    slice rescales only that one)."""
    if not images:
        raise ValueError("a series needs at least one image")
    for image in images:
        if image.number_of_frames != 1 or image.samples_per_pixel != 1:
            raise DicomError(image.path, "expected single-frame greyscale slices, found "
                                         f"{image.number_of_frames} frames x "
                                         f"{image.samples_per_pixel} samples")
        if image.image_position is None or image.image_orientation is None:
            raise DicomError(image.path, "no ImagePositionPatient / ImageOrientationPatient "
                                         "to place the slice")
    for attribute in ("series_instance_uid", "rows", "columns", "bits_allocated",
                      "pixel_representation"):
        _check_same(images, attribute)
    for attribute in ("image_orientation", "pixel_spacing"):
        _check_same(images, attribute, close=True)
    orientation = np.asarray(images[0].image_orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.asarray([np.dot(image.image_position, normal) for image in images])
    order = np.argsort(along, kind="stable")
    images, along = [images[i] for i in order], along[order]
    gaps = np.diff(along)
    duplicates = np.flatnonzero(gaps < 1e-4)
    if duplicates.size:
        i = duplicates[0]
        raise DicomError(images[i + 1].path, f"same position as {images[i].path}")
    if len(images) > 1:
        step = float(np.median(gaps))
        for i, gap in enumerate(gaps):
            if abs(gap - step) > max(1e-3, 0.01 * step):
                raise DicomError(images[i + 1].path, f"gap of {gap:.4g} mm to the previous "
                                                     f"slice, the others are {step:.4g} mm "
                                                     "(missing slice?)")
    else:
        step = images[0].slice_thickness or math.nan
    row_spacing, column_spacing = images[0].pixel_spacing or (math.nan, math.nan)
    return images, (step, row_spacing, column_spacing)
