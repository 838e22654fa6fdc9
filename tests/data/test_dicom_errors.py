"""Bad input raises DicomError naming the file and the reason. Mutated real files and
structured hostile inputs run in child processes: test_dicom_hostile.py."""
import pathlib
import struct

import numpy as np
import pytest
from dicom_factory import image_dataset, to_bytes
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from megamed.data.dicom import DicomError, decode_pixels


def _write(tmp_path, data: bytes) -> str:
    path = tmp_path / "bad.dcm"
    path.write_bytes(data)
    return str(path)


def _raises(tmp_path, data: bytes, *words: str) -> DicomError:
    path = _write(tmp_path, data)
    with pytest.raises(DicomError) as info:
        decode_pixels(path)
    assert info.value.path == path and path in str(info.value)
    for word in words:
        assert word in info.value.reason, info.value.reason
    return info.value


def _sample(name: str) -> bytes:
    return pathlib.Path(get_testdata_file(name)).read_bytes()


def _element_offset(data: bytes, tag: int) -> int:
    """Offset of an explicit VR little endian element's tag (the first occurrence)."""
    return data.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF))


@pytest.mark.parametrize("keep", [100, 131, 200, 1000, 5000])
def test_truncated_file(tmp_path, keep):
    _raises(tmp_path, _sample("MR_small.dcm")[:keep], "truncated" if keep > 132 else "")


def test_wrong_magic(tmp_path):
    data = bytearray(_sample("MR_small.dcm"))
    data[128:132] = b"DICX"
    _raises(tmp_path, bytes(data), "DICM")


def test_element_length_past_the_end_of_the_buffer(tmp_path):
    data = bytearray(_sample("MR_small.dcm"))
    at = _element_offset(data, 0x00100010)  # Patient's Name, PN: 2-byte length after the VR
    data[at + 6:at + 8] = struct.pack("<H", 0xFFF0)
    error = _raises(tmp_path, bytes(data))
    assert "past the end" in error.reason or "invalid VR" in error.reason


def test_pixel_data_length_past_the_end(tmp_path):
    data = bytearray(_sample("MR_small.dcm"))
    at = _element_offset(data, 0x7FE00010)
    data[at + 8:at + 12] = struct.pack("<I", len(data))
    _raises(tmp_path, bytes(data), "truncated", "past the end")


def test_pixel_length_disagrees_with_rows_columns_frames(tmp_path):
    data = bytearray(_sample("MR_small.dcm"))
    at = _element_offset(data, 0x00280010)  # Rows, US
    rows = struct.unpack_from("<H", data, at + 8)[0]
    data[at + 8:at + 10] = struct.pack("<H", rows + 1)
    _raises(tmp_path, bytes(data), "Pixel Data has 8192 bytes", f"{rows + 1} rows")


def test_more_whole_frames_than_number_of_frames(tmp_path):
    ds = image_dataset(np.zeros((2, 4, 4), np.uint16), bits_allocated=16, frames=2)
    ds.NumberOfFrames = 1
    _raises(tmp_path, to_bytes(ds), "at least one frame more")


def _rle_frame_header(data: bytes) -> int:
    """Offset of the first RLE frame's 64-byte header: after the empty Basic Offset Table."""
    at = _element_offset(data, 0x7FE00010)
    first_item = at + 12
    table_length = struct.unpack_from("<I", data, first_item + 4)[0]
    return first_item + 8 + table_length + 8


def test_rle_segment_count_disagrees_with_the_attributes(tmp_path):
    data = bytearray(_sample("MR_small_RLE.dcm"))
    header = _rle_frame_header(data)
    assert struct.unpack_from("<I", data, header)[0] == 2  # 16-bit: MSB and LSB segments
    data[header:header + 4] = struct.pack("<I", 3)
    _raises(tmp_path, bytes(data), "RLE frame 0", "3 segments")


def test_rle_segment_offsets_out_of_order(tmp_path):
    data = bytearray(_sample("MR_small_RLE.dcm"))
    header = _rle_frame_header(data)
    first, second = struct.unpack_from("<II", data, header + 4)
    data[header + 4:header + 12] = struct.pack("<II", second, first)
    _raises(tmp_path, bytes(data), "RLE frame 0", "out of order")


def test_rle_segment_decodes_to_fewer_bytes_than_rows_x_columns(tmp_path):
    ds = image_dataset(np.arange(400, dtype=np.uint8).reshape(20, 20), bits_allocated=8,
                       syntax=RLELossless)
    ds.Rows = 200
    _raises(tmp_path, to_bytes(ds), "RLE frame 0", "decodes to 400 bytes", "needs 4000")


def test_rle_claiming_a_huge_image_is_refused_before_allocating(tmp_path):
    """A 2-byte replicate run yields at most 128 bytes (PS3.5 G.3.1), so a small segment
    cannot fill 60000 x 60000 pixels: refused without a 3.6 GB allocation."""
    ds = image_dataset(np.zeros((20, 20), np.uint8), bits_allocated=8, syntax=RLELossless)
    ds.Rows = ds.Columns = 60000
    _raises(tmp_path, to_bytes(ds), "RLE frame 0", "too few")


def test_bytes_are_named_bytes():
    with pytest.raises(DicomError) as info:
        decode_pixels(b"\x00" * 200)
    assert info.value.path == "<bytes>" and str(info.value).startswith("<bytes>: ")


def test_missing_file_is_a_dicom_error(tmp_path):
    with pytest.raises(DicomError, match="cannot read"):
        decode_pixels(tmp_path / "absent.dcm")


def test_a_dicom_error_is_a_value_error():
    assert issubclass(DicomError, ValueError)
