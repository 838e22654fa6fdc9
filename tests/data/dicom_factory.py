"""Small DICOM files written by pydicom, for the cases its shipped samples lack."""
from __future__ import annotations

import io
import struct

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
