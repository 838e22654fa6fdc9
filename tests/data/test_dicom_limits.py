"""Issue 9: each hostile family, built here, ends in a DicomError naming the reason; the
nesting bound, the deflate bound and the per-decode memory limit sit where they should."""
import io
import struct
import time

import numpy as np
import pydicom
import pytest
from dicom_factory import (DEFLATED, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, RLE, UNDEFINED, deflated, delimiter,
                           element, element_header, encapsulated_pixel_data, image_attributes, image_dataset,
                           item_header, nested_sequences, part10, rle_frame, to_bytes)

from megamed.data.dicom import (AUTO_MEMORY_FACTOR, AUTO_MEMORY_FLOOR, MAX_SEQUENCE_DEPTH, DicomError, decode_pixels,
                                read_header, read_image)

MiB = 1 << 20


def _reason(read, data, **options) -> str:
    with pytest.raises(DicomError) as info:
        read(data, **options)
    return info.value.reason


def _native(rows, columns, length, **attributes) -> bytes:
    return image_attributes(rows, columns, **attributes) + element_header(0x7FE00010, "OW", length) + bytes(length)


# ---------------------------------------------------------------- 1. 1-bit YBR_FULL_422, 1-sample YBR

def test_one_bit_ybr_full_422_is_refused_like_pydicom():
    data = part10(_native(64, 64, 64 * 64 * 2 // 8, samples=3, bits=1, photometric="YBR_FULL_422"), EXPLICIT_LE)
    assert "BitsAllocated is 1, expected 8 or more for YBR_FULL_422" in _reason(decode_pixels, data)
    with pytest.raises(Exception):  # the reference refuses it too
        pydicom.dcmread(io.BytesIO(data)).pixel_array


def test_ybr_full_with_one_sample_is_a_dicom_error_not_a_value_error():
    data = part10(_native(4, 4, 16, photometric="YBR_FULL"), EXPLICIT_LE)
    for read in (decode_pixels, read_image):
        assert "SamplesPerPixel is 1, expected 3 for YBR_FULL" in _reason(read, data)


# ---------------------------------------------------------------- 2. one nesting bound

ENCODINGS = {"explicit LE": (EXPLICIT_LE, dict(explicit=True, little=True)),
             "implicit LE": (IMPLICIT_LE, dict(explicit=False, little=True)),
             "explicit BE": (EXPLICIT_BE, dict(explicit=True, little=False))}


@pytest.mark.parametrize("defined", [True, False], ids=["defined", "undefined"])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_nesting_up_to_the_bound_reads_and_one_more_level_is_refused(encoding, defined):
    syntax, enc = ENCODINGS[encoding]
    core = element(0x00100020, "LO", b"inner", **enc)

    def depth_of(dataset):
        depth = 0
        while 0x00400275 in dataset:
            depth, dataset = depth + 1, dataset[0x00400275][1][0]
        return depth, dataset

    header = read_header(part10(nested_sequences(MAX_SEQUENCE_DEPTH, defined=defined, core=core, **enc), syntax))
    depth, innermost = depth_of(header)
    assert depth == MAX_SEQUENCE_DEPTH and innermost[0x00100020][1] in ("inner", b"inner ")
    for depth in (MAX_SEQUENCE_DEPTH + 1, 20000):
        data = part10(nested_sequences(depth, defined=defined, core=core, **enc), syntax)
        assert f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels" in _reason(read_header, data)


def test_implicit_values_parsed_as_items_do_not_restart_the_depth_count():
    """Issue 9 item 2: an undefined-length sequence inside implicit VR values of defined
    length (which the parser only guesses to be sequences) counted from 1 again."""
    enc = dict(explicit=False)
    inner = nested_sequences(MAX_SEQUENCE_DEPTH // 2 + 1, defined=False, **enc)
    data = part10(nested_sequences(MAX_SEQUENCE_DEPTH // 2, defined=True, core=inner, **enc), IMPLICIT_LE)
    assert "nested deeper" in _reason(read_header, data)


def test_undefined_length_un_counts_its_implicit_content():
    inner = nested_sequences(MAX_SEQUENCE_DEPTH, explicit=False, defined=False)
    un = element_header(0x00091010, "UN", UNDEFINED) + item_header(UNDEFINED) + inner + delimiter("item") \
        + delimiter("sequence")
    data = part10(un + _native(2, 2, 4), EXPLICIT_LE)
    for read in (read_header, decode_pixels):
        assert "nested deeper" in _reason(read, data)


# ---------------------------------------------------------------- 3. deflate bomb

def test_deflate_bomb_fails_after_what_the_header_justifies():
    """16 x 16 pixels, then 256 MiB of zeros in 260 kB: refused as a bomb even under a
    16 MiB memory limit, so inflation stopped near the 256-byte image plus the margin."""
    stream = deflated(image_attributes(16, 16) + element_header(0x7FE00010, "OB", 256 * MiB), 256 * MiB)
    data = part10(stream, DEFLATED)
    assert len(data) < 300_000
    for read in (decode_pixels, read_header):
        reason = _reason(read, data, memory_limit=16 * MiB)
        assert "deflate bomb" in reason and "16 rows x 16 columns" in reason, reason


def test_deflated_dataset_without_an_image_is_bounded_by_the_memory_limit():
    stream = deflated(element_header(0x00091010, "OB", 256 * MiB), 256 * MiB)
    reason = _reason(read_header, part10(stream, DEFLATED))
    assert "the inflated dataset" in reason and f"memory limit of {AUTO_MEMORY_FLOOR} bytes" in reason, reason


def test_deflated_image_within_its_bound_decodes_as_pydicom_does():
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    ds = image_dataset(pixels, bits_allocated=16, syntax=pydicom.uid.DeflatedExplicitVRLittleEndian)
    np.testing.assert_array_equal(decode_pixels(to_bytes(ds)), pixels)


# ---------------------------------------------------------------- 4. Extended Offset Table amplification

def _rle_file(fragments, frames, size, **tables) -> bytes:
    body = image_attributes(size, size, frames=frames)
    if "extended" in tables:
        offsets, lengths = tables["extended"]
        body += element(0x7FE00001, "OV", struct.pack(f"<{frames}Q", *offsets))
        body += element(0x7FE00002, "OV", struct.pack(f"<{frames}Q", *lengths))
    return part10(body + encapsulated_pixel_data(fragments, tables.get("basic")), RLE)


def test_extended_offset_table_reusing_one_fragment_is_refused_before_allocating():
    """Issue 9 item 4: 16,384 frames of 1024 x 1024 at offset 0 (a 131 kB file asking for
    16 GiB): one fragment per frame means strictly increasing offsets."""
    fragment = rle_frame(64 * 64)
    data = _rle_file([fragment], 16384, 1024, extended=([0] * 16384, [len(fragment)] * 16384))
    assert len(data) < 300_000
    reason = _reason(decode_pixels, data)
    assert "Extended Offset Table offsets are not increasing: frame 1 at 0 after 0" in reason, reason


def test_basic_offset_table_reusing_a_fragment_is_refused():
    frames = [rle_frame(16)] * 2
    assert "not increasing" in _reason(decode_pixels, _rle_file(frames, 2, 4, basic=[0, 0]))


# ---------------------------------------------------------------- 5. linear fragment lookup

def test_fragment_lookup_is_linear():
    """400,000 one-pixel frames behind a Basic Offset Table took 22 s with a lookup per
    offset; one pass decodes them in a fraction of a second (5 s allowed on a busy machine)."""
    frames = [rle_frame(1)] * 400_000
    offsets, at = [], 0
    for frame in frames:
        offsets.append(at)
        at += 8 + len(frame)
    data = _rle_file(frames, len(frames), 1, basic=offsets)
    start = time.perf_counter()
    pixels = decode_pixels(data)
    assert time.perf_counter() - start < 5.0
    assert pixels.shape == (400_000, 1, 1) and not pixels.any()


# ---------------------------------------------------------------- the memory limit

def test_memory_limit_bounds_the_decoded_array():
    pixels = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    data = to_bytes(image_dataset(pixels, bits_allocated=16))
    np.testing.assert_array_equal(decode_pixels(data, memory_limit=pixels.nbytes), pixels)
    reason = _reason(decode_pixels, data, memory_limit=pixels.nbytes - 1)
    assert f"the decoded array: {pixels.nbytes} more bytes would pass the memory limit of " \
           f"{pixels.nbytes - 1} bytes per decode" in reason, reason
    assert "memory limit" in _reason(read_image, data, memory_limit=1000)


def test_memory_limit_counts_scratch_and_header_elements():
    pixels = np.arange(3 * 32 * 32, dtype=np.uint8).reshape(32, 32, 3)
    data = to_bytes(image_dataset(pixels, bits_allocated=8, planar=1))  # planes need a scratch copy
    assert "memory limit" in _reason(decode_pixels, data, memory_limit=2 * pixels.nbytes - 1)
    np.testing.assert_array_equal(decode_pixels(data, memory_limit=2 * pixels.nbytes), pixels)
    assert "the header's elements" in _reason(read_header, data, memory_limit=4096)


def test_automatic_limit_grows_with_the_image_the_header_describes():
    """A deflated 2048 x 2048 16-bit image (8 MiB) with a lying Pixel Data length: the
    automatic limit is AUTO_MEMORY_FACTOR x 8 MiB + the floor, and the bomb check fires
    first, at about twice the image."""
    assert AUTO_MEMORY_FACTOR >= 2 and AUTO_MEMORY_FLOOR >= MiB
    stream = deflated(image_attributes(2048, 2048, bits=16) + element_header(0x7FE00010, "OW", 0xFFFFFFF0), 64 * MiB)
    assert "deflate bomb" in _reason(decode_pixels, part10(stream, DEFLATED))


@pytest.mark.parametrize("limit", [0, -1, 1.5, "1"])
def test_memory_limit_must_be_a_positive_int(limit):
    with pytest.raises(ValueError, match="memory_limit"):
        decode_pixels(b"", memory_limit=limit)


def test_automatic_limit_admits_a_large_header_of_a_large_image():
    """140,000 elements (about 70 MB as Python objects) pass the 64 MiB floor: refused in a
    file that describes no image, read when the Image Pixel module before them describes a
    4096 x 4096 x 16-bit x 10-frame image (the limit grows as soon as it is described)."""
    per_group = 0xF000 - 0x1000
    elements = b"".join(element((group << 16) | (0x1000 + k), "LO", b"ab")
                        for group in (0x0029, 0x0031, 0x0033) for k in range(per_group))[:140_000 * 10]
    assert "the header's elements" in _reason(read_header, part10(elements, EXPLICIT_LE))
    image = image_attributes(4096, 4096, bits=16, frames=10)
    assert len(read_header(part10(image + elements, EXPLICIT_LE))) > 140_000
