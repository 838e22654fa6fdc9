"""decode_pixels equals pydicom's pixel_array (shape, dtype, values) on pydicom's shipped
files and on generated files for what those lack."""
import io
import os
import pathlib
import warnings

import numpy as np
import pydicom
import pytest
from dicom_factory import image_dataset, reencapsulate, reference, to_bytes
from pydicom.data import get_testdata_files
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless)

from megamed.data.dicom import DicomError, decode_pixels

DECODED_HERE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                DeflatedExplicitVRLittleEndian, RLELossless}


def _shipped_images():
    """pydicom's sample files with Pixel Data in a syntax decoded here."""
    found = []
    for path in sorted(get_testdata_files()):
        if not os.path.isfile(path):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True)
        except Exception:  # noqa: BLE001 - deliberately broken samples: no reference to compare
            continue
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        if "PixelData" in ds and syntax in DECODED_HERE:
            found.append(pytest.param(path, id=os.path.basename(path)))
    return found


SHIPPED = _shipped_images()


def assert_same_array(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype  # byte order included: pydicom keeps '>' for big endian
    np.testing.assert_array_equal(ours, ref)


def test_the_shipped_samples_cover_every_syntax_decoded_here():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        syntaxes = {pydicom.dcmread(p.values[0], force=True).file_meta.TransferSyntaxUID
                    for p in SHIPPED}
    assert syntaxes == DECODED_HERE


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_file_matches_pydicom(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ref = pydicom.dcmread(path, force=True).pixel_array
        except Exception as e:
            pytest.skip(f"pydicom itself cannot decode this file: {type(e).__name__}: {e}")
    assert_same_array(decode_pixels(path), ref)


def test_every_source_type_gives_the_same_array(tmp_path):
    path = pathlib.Path(next(p.values[0] for p in SHIPPED if p.id == "MR_small.dcm"))
    data = path.read_bytes()
    expected = reference(data)
    for source in (str(path), path, data, bytearray(data), memoryview(data)):
        assert_same_array(decode_pixels(source), expected)


RNG = np.random.default_rng(20240531)


def _random(shape, dtype, high_bits=True):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


GENERATED = {
    # 1 bit: eight pixels to a byte, frames not byte-aligned (3 x 5 = 15 bits each).
    "1bit_multiframe": lambda: image_dataset(RNG.integers(0, 2, (3, 3, 5), dtype=np.uint8),
                                             bits_allocated=1, frames=3),
    "32bit_unsigned": lambda: image_dataset(_random((7, 9), np.uint32), bits_allocated=32),
    "32bit_signed_stored_20": lambda: image_dataset(_random((7, 9), np.int32), bits_allocated=32,
                                                    bits_stored=20, signed=True),
    "16bit_signed_stored_12": lambda: image_dataset(_random((2, 16, 16), np.int16), bits_allocated=16,
                                                    bits_stored=12, signed=True, frames=2),
    "16bit_unsigned_stored_10": lambda: image_dataset(_random((16, 16), np.uint16), bits_allocated=16,
                                                      bits_stored=10),
    "8bit_signed_stored_5": lambda: image_dataset(_random((8, 8), np.int8), bits_allocated=8,
                                                  bits_stored=5, signed=True),
    "64bit_signed": lambda: image_dataset(_random((4, 5), np.int64), bits_allocated=64, signed=True),
    "big_endian_16bit_signed_stored_12": lambda: image_dataset(
        _random((3, 6, 7), np.int16), bits_allocated=16, bits_stored=12, signed=True, frames=3,
        syntax=ExplicitVRBigEndian),
    "big_endian_32bit": lambda: image_dataset(_random((6, 7), np.uint32), bits_allocated=32,
                                              syntax=ExplicitVRBigEndian),
    "big_endian_8bit_rgb_planar1": lambda: image_dataset(
        _random((5, 7, 3), np.uint8), bits_allocated=8, planar=1, syntax=ExplicitVRBigEndian),
    "planar1_rgb_8bit_multiframe": lambda: image_dataset(_random((2, 5, 7, 3), np.uint8),
                                                         bits_allocated=8, planar=1, frames=2),
    "planar1_rgb_16bit": lambda: image_dataset(_random((5, 7, 3), np.uint16), bits_allocated=16, planar=1),
    "implicit_16bit": lambda: image_dataset(_random((9, 4), np.uint16), bits_allocated=16,
                                            syntax=ImplicitVRLittleEndian),
    "deflated_multiframe": lambda: image_dataset(_random((3, 9, 4), np.int16), bits_allocated=16,
                                                 signed=True, frames=3,
                                                 syntax=DeflatedExplicitVRLittleEndian),
    "ybr_full_rle": lambda: image_dataset(_random((6, 8, 3), np.uint8), bits_allocated=8,
                                          photometric="YBR_FULL", syntax=RLELossless),
    "rle_multiframe_8bit": lambda: image_dataset(RNG.integers(0, 4, (4, 20, 30), dtype=np.uint8),
                                                 bits_allocated=8, frames=4, syntax=RLELossless),
    "rle_multiframe_16bit_signed_stored_12": lambda: image_dataset(
        _random((3, 12, 10), np.int16), bits_allocated=16, bits_stored=12, signed=True, frames=3,
        syntax=RLELossless),
    "rle_multiframe_rgb_16bit": lambda: image_dataset(_random((2, 6, 5, 3), np.uint16),
                                                      bits_allocated=16, frames=2, syntax=RLELossless),
    "rle_basic_offset_table_two_fragments_per_frame": lambda: reencapsulate(image_dataset(
        _random((3, 10, 10), np.uint16), bits_allocated=16, frames=3, syntax=RLELossless)),
    "rle_extended_offset_table": lambda: reencapsulate(image_dataset(
        _random((3, 10, 10), np.uint16), bits_allocated=16, frames=3, syntax=RLELossless),
        extended=True),
}


@pytest.mark.parametrize("case", sorted(GENERATED))
def test_generated_file_matches_pydicom(case):
    data = to_bytes(GENERATED[case]())
    assert_same_array(decode_pixels(data), reference(data))


def test_unused_bits_are_masked_and_sign_extended_as_the_standard_requires():
    """PS3.5 8.1.1, computed here in numpy: keep the low 12 bits, sign bit 11."""
    raw = _random((8, 8), np.int16)
    data = to_bytes(image_dataset(raw, bits_allocated=16, bits_stored=12, signed=True))
    low = raw.view(np.uint16) & 0x0FFF
    expected = np.where(low & 0x0800, low.astype(np.int32) - 0x1000, low).astype(np.int16)
    np.testing.assert_array_equal(decode_pixels(data), expected)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_bare_dataset_without_preamble_or_meta(implicit):
    ds = image_dataset(_random((2, 6, 5), np.int16), bits_allocated=16, bits_stored=14,
                       signed=True, frames=2)
    bare = to_bytes(ds, bare=True, implicit=implicit)
    assert bare[128:132] != b"DICM"
    assert_same_array(decode_pixels(bare), reference(to_bytes(ds)))


def test_compressed_syntax_without_a_plugin_names_the_syntax_and_the_package():
    path = next(p for p in get_testdata_files("SC_rgb_jpeg_dcmtk.dcm"))
    decoder = pydicom.pixels.decoders.base.get_decoder(pydicom.uid.JPEGBaseline8Bit)
    if decoder.is_available:
        assert_same_array(decode_pixels(path), pydicom.dcmread(path).pixel_array)
        return
    with pytest.raises(DicomError) as info:
        decode_pixels(path)
    assert "JPEG Baseline" in info.value.reason and "1.2.840.10008.1.2.4.50" in info.value.reason
    assert "pylibjpeg" in info.value.reason and info.value.path == path


def test_pixel_array_of_a_dataset_read_from_bytes_is_the_reference_we_compare_against():
    """Guards the reference itself: pydicom from a file and from bytes agree."""
    path = next(p.values[0] for p in SHIPPED if p.id == "rtdose_rle.dcm")
    data = pathlib.Path(path).read_bytes()
    assert_same_array(pydicom.dcmread(io.BytesIO(data)).pixel_array, pydicom.dcmread(path).pixel_array)
