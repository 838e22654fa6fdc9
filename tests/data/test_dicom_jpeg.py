"""Compressed DICOM: JPEG Lossless decoded by csrc/jpeg_lossless.cpp, JPEG-LS / JPEG 2000 /
JPEG baseline through their codecs, and the multi-threaded batch / series decode. The
reference is pydicom's pixel_array with the same codec (pylibjpeg-libjpeg for JPEG
Lossless) on every such file pydicom and pydicom-data ship, and on files written by the
test encoder (jpeg_lossless_encoder.py)."""
import io
import itertools
import os
import pathlib
import struct
import warnings

import numpy as np
import pydicom
import pytest
from dicom_factory import image_dataset, to_bytes
from jpeg_lossless_encoder import encode
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLossless, JPEGLosslessSV1

from megamed.data.dicom import (DicomError, decode_pixels, decode_pixels_batch, read_image,
                                read_series, rescaled)

# Syntax -> the pydicom plugin whose codec is the reference (the one our path calls).
PLUGINS = {JPEGLossless: "pylibjpeg", JPEGLosslessSV1: "pylibjpeg",
           **{uid: "pylibjpeg" for uid in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                                           "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")},
           "1.2.840.10008.1.2.4.80": "pyjpegls", "1.2.840.10008.1.2.4.81": "pyjpegls"}


def _data_folders() -> list[pathlib.Path]:
    """pydicom's test_files and pydicom-data's data_store (globbed: no download)."""
    folders = [pathlib.Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # the pydicom-data package
        folders.append(pathlib.Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return folders


def _shipped_compressed():
    found = []
    for folder in _data_folders():
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(path, force=True, defer_size=1024)
                syntax = ds.file_meta.get("TransferSyntaxUID")
                if "PixelData" not in ds:
                    continue
            except Exception:  # noqa: BLE001 - not DICOM, or deliberately broken
                continue
            if syntax in PLUGINS:
                found.append(pytest.param(str(path), syntax, id=f"{folder.parent.name}/{path.name}"))
    return found


SHIPPED = _shipped_compressed()


MAX_FRAMES = 8  # keeps the test fast: color3d_jpeg_baseline.dcm has 120 colour frames


def _reference(source, plugin: str) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source, force=True)
    ds.pixel_array_options(decoding_plugin=plugin)
    return ds.pixel_array


def _first_frames(path: str) -> bytes:
    """The file with only its first MAX_FRAMES frames, when it has more (the frames' bytes
    as they are, one fragment per frame as pydicom splits them)."""
    ds = pydicom.dcmread(path, force=True)
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames <= MAX_FRAMES:
        return pathlib.Path(path).read_bytes()
    kept = list(itertools.islice(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=frames), MAX_FRAMES))
    ds.PixelData, ds.NumberOfFrames = encapsulate(kept), MAX_FRAMES
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _same(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


def test_every_shipped_lossless_jpeg_and_codec_syntax_is_covered():
    syntaxes = {p.values[1] for p in SHIPPED}
    assert {JPEGLosslessSV1, "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.4.90"} <= syntaxes, syntaxes


@pytest.mark.parametrize("path,syntax", SHIPPED)
def test_shipped_file_matches_pydicom_with_the_same_codec(path, syntax):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = _first_frames(path)
        try:
            ref = _reference(data, PLUGINS[syntax])
        except Exception as e:  # noqa: BLE001
            pytest.skip(f"pydicom itself cannot decode this file: {type(e).__name__}: {e}")
    _same(decode_pixels(data), ref)


def _jpeg_file(pixels: np.ndarray, precision: int, frames: int = 1, signed: bool = False,
               bits_stored: int | None = None, fragments: int = 1, **options) -> bytes:
    """A JPEG Lossless dataset of `pixels` ([frames,] rows, cols[, 3]); with `fragments` 2
    each frame is split in two items behind a Basic Offset Table (PS3.5 A.4)."""
    planes = pixels if frames > 1 else pixels[None]
    mask = (1 << precision) - 1
    encoded = [encode(frame.astype(np.int64) & mask, precision, **options) for frame in planes]
    ds = image_dataset(pixels, bits_allocated=8 if precision <= 8 else 16, frames=frames,
                       bits_stored=bits_stored or precision, signed=signed)
    if fragments == 1:
        ds.PixelData = encapsulate(encoded)
    else:
        ds.PixelData = encapsulate(encoded, fragments_per_frame=fragments)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1 if options.get("predictor", 1) == 1 else JPEGLossless
    return to_bytes(ds)


RNG = np.random.default_rng(17)


def _image(shape, precision: int, smooth: bool) -> np.ndarray:
    values = RNG.integers(0, 1 << precision, size=shape)
    if smooth:  # small differences: the short codes; random values: the long ones
        values = np.cumsum(RNG.integers(-3, 4, size=shape), axis=-2 if len(shape) < 4 else -3) + (1 << (precision - 1))
    return (values & ((1 << precision) - 1)).astype(np.uint8 if precision <= 8 else np.uint16)


# (predictor, precision, components, interleaved, restart lines, frames): every predictor,
# precisions 2-16, colour one scan or three, restarts, multi-frame; bounded to stay fast.
CASES = [(1, 8, 1, True, 0, 1), (2, 16, 1, True, 0, 2), (3, 12, 1, True, 4, 1),
         (4, 16, 1, True, 3, 1), (5, 10, 1, True, 0, 3), (6, 16, 3, True, 2, 1),
         (7, 12, 3, False, 0, 2), (4, 8, 3, True, 5, 1), (1, 2, 1, True, 1, 1),
         (6, 5, 1, True, 0, 1), (7, 16, 1, True, 7, 2), (1, 16, 3, False, 3, 1)]


@pytest.mark.parametrize("predictor,precision,components,interleaved,restart,frames", CASES)
def test_generated_jpeg_lossless_matches_pydicom_and_the_input(predictor, precision, components,
                                                              interleaved, restart, frames):
    shape = (frames, 13, 17) + ((3,) if components == 3 else ())
    pixels = _image(shape if frames > 1 else shape[1:], precision, smooth=predictor % 2 == 0)
    data = _jpeg_file(pixels, precision, frames, predictor=predictor, restart_lines=restart,
                      interleaved=interleaved, seed=predictor, fragments=2 if frames > 1 else 1)
    ours = decode_pixels(data)
    _same(ours, _reference(data, "pylibjpeg"))
    _same(ours, pixels)


@pytest.mark.parametrize("bits_stored", [12, 16])
def test_signed_jpeg_lossless_is_sign_extended_as_pydicom_does(bits_stored):
    pixels = RNG.integers(-(1 << (bits_stored - 1)), 1 << (bits_stored - 1), (2, 12, 9)).astype(np.int16)
    data = _jpeg_file(pixels, bits_stored, frames=2, signed=True, predictor=4)
    ours = decode_pixels(data)
    _same(ours, _reference(data, "pylibjpeg"))
    _same(ours, pixels)


@pytest.mark.parametrize("precision,point_transform", [(8, 1), (12, 3), (16, 2)])
def test_point_transform_follows_t81(precision, point_transform):
    """T.81 H.1.2.1: the first prediction is 2**(P - Pt - 1) and the output is shifted left
    by Pt, so the decoded values are the input with its low Pt bits cleared (GDCM and the
    IJG lossless decoder agree). pylibjpeg-libjpeg starts from 2**(P - 1) instead and
    returns saturated values, so it cannot be the reference here."""
    pixels = _image((11, 14), precision, smooth=True)
    data = _jpeg_file(pixels, precision, predictor=1, point_transform=point_transform)
    _same(decode_pixels(data), pixels >> point_transform << point_transform)


# --- bad input: a DicomError naming the reason, before any allocation the bytes cannot back


def _base() -> tuple[bytes, np.ndarray]:
    pixels = _image((16, 20), 12, smooth=False)
    return _jpeg_file(pixels, 12, predictor=1, restart_lines=4), pixels


def _stream(data: bytes) -> tuple[int, int]:
    """(start, end) of the JPEG stream: from SOI to after EOI."""
    return data.index(b"\xff\xd8\xff"), data.rindex(b"\xff\xd9") + 2


def _raises(data: bytes, *words: str) -> None:
    with pytest.raises(DicomError) as info:
        decode_pixels(data)
    assert info.value.path == "<bytes>"
    for word in words:
        assert word in info.value.reason, info.value.reason


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    start, end = _stream(data)
    assert old in data[start:end]
    return data[:start] + data[start:end].replace(old, new, 1) + data[end:]


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_truncated_entropy_coded_segment(keep):
    data, _ = _base()
    ds = pydicom.dcmread(io.BytesIO(data))
    frame = ds.PixelData[slice(*_stream(ds.PixelData))]
    ds.PixelData = encapsulate([frame[:int(len(frame) * keep)]])
    _raises(to_bytes(ds), "JPEG Lossless frame 0", "truncated")


def test_missing_restart_marker():
    data, _ = _base()
    _raises(_replace(data, b"\xff\xd0", b"\x00\x00"), "RST0")


def test_bad_huffman_table():
    data, _ = _base()
    start, _ = _stream(data)
    at = data.index(b"\xff\xc4", start) + 5  # DHT, length, class/destination: then 16 counts
    bad = bytearray(data)
    bad[at:at + 2] = b"\x04\x04"  # four 1-bit codes: more than the code space holds
    _raises(bytes(bad), "bad Huffman table")


def test_markers_out_of_order():
    data, _ = _base()
    start, _ = _stream(data)
    sof = data.index(b"\xff\xc3", start)
    length = struct.unpack(">H", data[sof + 2:sof + 4])[0]
    sos = data.index(b"\xff\xda", start)
    moved = data[:sof] + data[sof + 2 + length:sos] + data[sof:sof + 2 + length] + data[sos:]
    sos = moved.index(b"\xff\xda", start)
    swapped = moved[:sos] + b"\xff\xda" + moved[sos + 2:]
    no_frame = data[:sof] + b"\xff\xfe" + data[sof + 2:]  # the SOF3 turned into a comment
    _raises(no_frame, "out of order", "SOS before the frame header")
    assert decode_pixels(swapped).shape == (16, 20)  # SOF3 after DHT/DRI is still in order


def test_frame_size_disagrees_with_the_header():
    data, _ = _base()
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows = 15
    _raises(to_bytes(ds), "frame size 20 x 16", "Columns x Rows 20 x 15")


def test_absurd_dimensions_are_refused_before_allocating():
    data, _ = _base()
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows = ds.Columns = 65535
    start = ds.PixelData.index(b"\xff\xc3")
    pixel_data = bytearray(ds.PixelData)
    pixel_data[start + 5:start + 9] = struct.pack(">HH", 65535, 65535)
    ds.PixelData = bytes(pixel_data)
    _raises(to_bytes(ds), "too few for 4294836225 samples")


def test_not_a_lossless_frame():
    data, _ = _base()
    _raises(_replace(data, b"\xff\xc3", b"\xff\xc1"), "not the lossless Huffman process")


def test_mutated_jpeg_lossless_gives_an_array_or_a_dicom_error():
    """Byte flips and overwrites inside the JPEG streams (headers, tables, coded data)."""
    rng = np.random.default_rng(3)
    sources = [_base()[0], _jpeg_file(_image((2, 9, 7, 3), 16, True), 16, frames=2, predictor=6,
                                      restart_lines=2, interleaved=False)]
    outcomes = {"array": 0, "error": 0}
    for data in sources:
        start, end = _stream(data)
        for _ in range(600):
            mutant = bytearray(data)
            near_start = int(rng.integers(2)) == 0
            for at in rng.integers(start, min(end, start + 200) if near_start else end, rng.integers(1, 5)):
                mutant[at] = int(rng.integers(256)) if near_start else mutant[at] ^ (1 << int(rng.integers(8)))
            try:
                decode_pixels(bytes(mutant))
                outcomes["array"] += 1
            except DicomError as e:
                assert e.reason
                outcomes["error"] += 1
    assert outcomes["array"] > 50 and outcomes["error"] > 50, outcomes


# --- batch and series decode


def _series(tmp_path, slices: int, jpeg: bool) -> list[str]:
    paths = []
    for z in RNG.permutation(slices):
        pixels = RNG.integers(-1000, 3000, (24, 20)).astype(np.int16)
        ds = image_dataset(pixels, bits_allocated=16, signed=True, Modality="CT",
                           ImagePositionPatient=[0, 0, 2.5 * z], ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                           PixelSpacing=[0.5, 0.5], RescaleSlope=0.7 + z % 2, RescaleIntercept=-1024.3,
                           SeriesInstanceUID="1.2.3")
        if jpeg and z % 2:
            ds.PixelData = encapsulate([encode(pixels.view(np.uint16), 16, predictor=1)])
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        paths.append(str(tmp_path / f"{z}.dcm"))
        pathlib.Path(paths[-1]).write_bytes(to_bytes(ds))
    return paths


@pytest.mark.parametrize("threads", [1, 3])
def test_read_series_on_threads_equals_slice_by_slice(tmp_path, threads):
    paths = _series(tmp_path, 7, jpeg=True)
    series = read_series(paths, threads=threads)
    images = sorted((read_image(p) for p in paths), key=lambda image: image.image_position[2])
    np.testing.assert_array_equal(series.volume, np.stack([rescaled(image) for image in images]))
    assert series.volume.dtype == np.float32
    assert series.paths == tuple(image.path for image in images)


def test_batch_mixes_syntaxes_and_fills_a_given_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    paths = _series(tmp_path, 4, jpeg=True)
    jls = str(tmp_path / "jls.dcm")
    ds = next(d for d in map(pydicom.dcmread, paths) if not d.file_meta.TransferSyntaxUID.is_compressed)
    ds.compress("1.2.840.10008.1.2.4.80", encoding_plugin="pyjpegls")  # a codec syntax too
    ds.save_as(jls)
    sources = paths + [jls]
    out = torch.zeros((5, 24, 20), dtype=torch.int16)
    assert decode_pixels_batch(sources, threads=2, out=out) is out
    expected = np.stack([decode_pixels(p) for p in sources])
    np.testing.assert_array_equal(out.numpy(), expected)
    pinned = decode_pixels_batch(sources, threads=2, pin_memory=True)
    assert isinstance(pinned, torch.Tensor) and pinned.is_pinned() == torch.cuda.is_available()
    np.testing.assert_array_equal(pinned.numpy(), expected)


def test_batch_names_the_file_that_differs(tmp_path):
    paths = _series(tmp_path, 3, jpeg=False)
    other = str(tmp_path / "other.dcm")
    pathlib.Path(other).write_bytes(to_bytes(image_dataset(np.zeros((24, 21), np.int16), bits_allocated=16, signed=True)))
    with pytest.raises(DicomError) as info:
        decode_pixels_batch(paths + [other], threads=2)
    assert info.value.path == other and "unlike the first file" in info.value.reason
