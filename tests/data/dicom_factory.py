"""Small DICOM files written by pydicom, for the cases its shipped samples lack."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate_extended, generate_frames, itemize_fragment
from pydicom.pixels import pack_bits
from pydicom.uid import (CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         RLELossless, generate_uid)


def image_dataset(pixels: np.ndarray, *, bits_allocated: int, bits_stored: int | None = None,
                  signed: bool = False, photometric: str | None = None, frames: int = 1,
                  planar: int = 0, syntax: str = ExplicitVRLittleEndian, **attributes) -> Dataset:
    """A dataset holding `pixels` ([frames,] rows, cols[, samples]) in `syntax`. Bits above
    `bits_stored` keep whatever `pixels` has there, as real files with overlays do."""
    samples = pixels.shape[-1] if pixels.ndim == (4 if frames > 1 else 3) else 1
    rows, cols = pixels.shape[1:3] if frames > 1 else pixels.shape[:2]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = photometric or ("RGB" if samples == 3 else "MONOCHROME2")
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    if samples == 3:
        ds.PlanarConfiguration = planar
    if frames > 1:
        ds.NumberOfFrames = frames
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if bits_allocated == 1:
        ds.PixelData = pack_bits(pixels)
        return ds
    stored = pixels
    if samples == 3 and planar == 1:
        stored = np.moveaxis(pixels, -1, -3)  # [frames,] samples, rows, cols
    if syntax == RLELossless:
        ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(RLELossless, encoding_plugin="pydicom")
        return ds
    if syntax == ExplicitVRBigEndian:
        stored = stored.astype(stored.dtype.newbyteorder(">"))
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    return ds


def to_bytes(ds: Dataset, *, bare: bool = False, implicit: bool = False) -> bytes:
    """Part 10 bytes, or with `bare` a dataset without preamble and file meta."""
    out = io.BytesIO()
    if bare:
        plain = Dataset()
        plain.update(ds)
        pydicom.dcmwrite(out, plain, implicit_vr=implicit, little_endian=True)
    else:
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def reencapsulate(ds: Dataset, *, extended: bool = False) -> Dataset:
    """Re-wraps an RLE dataset's frames (PS3.5 A.4): two fragments per frame (the 64-byte
    RLE header, then the segments) with a Basic Offset Table, or with `extended` one
    fragment per frame and an Extended Offset Table."""
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))
    if extended:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(frames)
        return ds
    items, offsets, at = [], [], 0
    for frame in frames:
        offsets.append(at)
        for part in (frame[:64], frame[64:]):
            items.append(itemize_fragment(part))
            at += len(items[-1])
    table = itemize_fragment(struct.pack(f"<{len(offsets)}I", *offsets))
    ds.PixelData = table + b"".join(items)
    return ds


def reference(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data), force=True).pixel_array


# ---------------------------------------------------------------- raw bytes, for hostile files
# pydicom refuses to write most of what follows (or takes seconds for it): these builders
# write PS3.5 elements directly, in O(size) even for 20,000 nesting levels.

IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
DEFLATED, RLE = "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5"
UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def element_header(tag: int, vr: str, length: int, *, explicit: bool = True, little: bool = True) -> bytes:
    """PS3.5 7.1.2 (explicit VR: 2- or 4-byte length by VR) and 7.1.3 (implicit VR)."""
    order = "<" if little else ">"
    head = struct.pack(order + "HH", tag >> 16, tag & 0xFFFF)
    if not explicit:
        return head + struct.pack(order + "I", length)
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack(order + "I", length)
    return head + vr.encode() + struct.pack(order + "H", length)


def element(tag: int, vr: str, value: bytes, **encoding) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB", "UN") else b" "
    return element_header(tag, vr, len(value), **encoding) + value


def item_header(length: int, little: bool = True) -> bytes:
    return struct.pack("<HHI" if little else ">HHI", 0xFFFE, 0xE000, length)


def delimiter(kind: str, little: bool = True) -> bytes:
    """Item ("item") or Sequence ("sequence") Delimitation Item, PS3.5 7.5.2."""
    return struct.pack("<HHI" if little else ">HHI", 0xFFFE, 0xE00D if kind == "item" else 0xE0DD, 0)


def nested_sequences(depth: int, *, explicit: bool = True, little: bool = True, defined: bool = True,
                     vr: str = "SQ", tag: int = 0x00400275, core: bytes = b"") -> bytes:
    """`depth` sequences, each the only element of its parent's single item, `core` in the
    innermost item. Defined lengths are computed inside out, so the bytes are joined once."""
    head_size = len(element_header(tag, vr, 0, explicit=explicit, little=little)) + 8
    if not defined:
        head = element_header(tag, vr, UNDEFINED, explicit=explicit, little=little) + item_header(UNDEFINED, little)
        tail = delimiter("item", little) + delimiter("sequence", little)
        return head * depth + core + tail * depth
    heads, size = [], len(core)
    for _ in range(depth):
        heads.append(element_header(tag, vr, size + 8, explicit=explicit, little=little) + item_header(size, little))
        size += head_size
    return b"".join(reversed(heads)) + core


def part10(body: bytes, syntax: str) -> bytes:
    """Preamble, "DICM" and a file meta group (PS3.10 7.1) declaring `syntax` over `body`."""
    meta = element(0x00020001, "OB", b"\0\1") + element(0x00020010, "UI", syntax.encode())
    meta = element(0x00020000, "UL", struct.pack("<I", len(meta))) + meta
    return b"\0" * 128 + b"DICM" + meta + body


def deflated(body: bytes, zeros: int = 0, chunk: int = 1 << 20) -> bytes:
    """Raw deflate of `body` followed by `zeros` zero bytes. The zeros are one compressed
    1 MiB block repeated (a full flush makes each block independent), so a 1 GiB bomb takes
    milliseconds to build and about 1 MB."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [z.compress(body), z.flush(zlib.Z_FULL_FLUSH)]
    if zeros:
        block = z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH)
        out.append(block * (zeros // chunk))
        out.append(z.compress(bytes(zeros % chunk)))
    out.append(z.flush())
    return b"".join(out)


def image_attributes(rows: int, columns: int, *, samples: int = 1, bits: int = 8, photometric: str = "MONOCHROME2",
                     frames: int | None = None, planar: int | None = 0, **encoding) -> bytes:
    """The Image Pixel module (PS3.3 C.7.6.3) in tag order, values as given (not checked)."""
    order = "<" if encoding.get("little", True) else ">"

    def us(tag: int, value: int) -> bytes:
        return element(tag, "US", struct.pack(order + "H", value), **encoding)

    out = us(0x00280002, samples) + element(0x00280004, "CS", photometric.encode(), **encoding)
    if planar is not None:
        out += us(0x00280006, planar)
    if frames is not None:
        out += element(0x00280008, "IS", str(frames).encode(), **encoding)
    return (out + us(0x00280010, rows) + us(0x00280011, columns) + us(0x00280100, bits) + us(0x00280101, bits)
            + us(0x00280102, bits - 1) + us(0x00280103, 0))


def encapsulated_pixel_data(fragments: list[bytes], basic_offsets: list[int] | None = None) -> bytes:
    """Pixel Data of undefined length (PS3.5 A.4): the Basic Offset Table item, fragments,
    a Sequence Delimitation Item."""
    table = struct.pack(f"<{len(basic_offsets or [])}I", *(basic_offsets or []))
    parts = [element_header(0x7FE00010, "OB", UNDEFINED), item_header(len(table)), table]
    for fragment in fragments:
        parts += [item_header(len(fragment)), fragment]
    parts.append(delimiter("sequence"))
    return b"".join(parts)


def rle_frame(pixels: int, segments: int = 1) -> bytes:
    """An RLE Lossless frame (PS3.5 G.5) of `segments` segments, each `pixels` zero bytes as
    replicate runs of 128."""
    runs = (pixels + 127) // 128
    segment = b"\x81\x00" * runs
    offsets = [64 + k * len(segment) for k in range(segments)]
    return struct.pack("<16I", segments, *offsets, *[0] * (15 - segments)) + segment * segments
