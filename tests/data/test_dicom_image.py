"""read_image metadata, Hounsfield conversion, windowing, resampling and series assembly,
each against pydicom or a numpy / scipy reference computed here."""
import numpy as np
import pydicom
import pytest
from dicom_factory import image_dataset, to_bytes
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from scipy.interpolate import RegularGridInterpolator

from megamed.data.dicom import (WINDOW_PRESETS, DicomError, apply_window, hounsfield, read_header,
                                read_image, read_series, resample, window)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm", "rtdose.dcm", "SC_rgb_rle_2frame.dcm"])
def test_read_image_attributes_equal_pydicom(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, ds.pixel_array)
    assert image.pixels.dtype.isnative
    assert (image.rows, image.columns) == (ds.Rows, ds.Columns)
    assert image.number_of_frames == int(ds.get("NumberOfFrames", 1))
    assert image.bits_stored == ds.BitsStored and image.pixel_representation == ds.PixelRepresentation
    assert image.modality == ds.get("Modality")
    assert image.rescale_slope == float(ds.get("RescaleSlope", 1.0))
    assert image.rescale_intercept == float(ds.get("RescaleIntercept", 0.0))
    for ours, keyword in [(image.pixel_spacing, "PixelSpacing"),
                          (image.image_position, "ImagePositionPatient"),
                          (image.image_orientation, "ImageOrientationPatient")]:
        expected = ds.get(keyword)
        assert ours == (None if expected is None else tuple(float(v) for v in expected))
    for ours, keyword in [(image.window_center, "WindowCenter"), (image.window_width, "WindowWidth")]:
        expected = ds.get(keyword)
        expected = () if expected is None else tuple(float(v) for v in np.atleast_1d(expected))
        assert ours == expected
    assert image.sop_instance_uid == ds.SOPInstanceUID
    assert image.series_instance_uid == ds.get("SeriesInstanceUID")
    assert image.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID


def test_read_header_equals_pydicom_values():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    header = read_header(path)
    assert set(header) == {int(t) for t in ds.keys()} - {0x7FE00010} | {int(t) for t in ds.file_meta.keys()}
    for tag, (vr, value) in header.items():
        elem = ds[tag] if tag in ds else ds.file_meta[tag]
        assert vr == elem.VR
        if vr in ("US", "SS", "UL", "SL", "FL", "FD"):
            np.testing.assert_array_equal(value, elem.value)
        elif vr in ("CS", "UI", "SH", "LO", "DA", "TM", "PN"):
            expected = [str(v) for v in elem.value] if elem.VM > 1 else str(elem.value)
            assert value == expected, (hex(tag), value, expected)
        elif vr == "SQ":
            assert len(value) == len(elem.value)


def _ct(stored: np.ndarray, slope: float, intercept: float, **attributes) -> bytes:
    return to_bytes(image_dataset(stored, bits_allocated=16, bits_stored=12, Modality="CT",
                                  RescaleSlope=slope, RescaleIntercept=intercept, **attributes))


@pytest.mark.parametrize("slope,intercept", [(1.0, -1024.0), (2.5, -1000.5)])
def test_hounsfield_is_slope_times_stored_plus_intercept(slope, intercept):
    stored = np.array([[0, 1, 1024], [2047, 3000, 4095]], np.uint16)
    hu = hounsfield(read_image(_ct(stored, slope, intercept)))
    assert hu.dtype == np.float32 and hu.shape == stored.shape
    np.testing.assert_array_equal(hu, (stored.astype(np.float64) * slope + intercept).astype(np.float32))


def test_hounsfield_refuses_a_non_ct_modality():
    with pytest.raises(DicomError, match="Modality is MR"):
        hounsfield(read_image(get_testdata_file("MR_small.dcm")))


def _window_by_the_standard(x: float, center: float, width: float) -> float:
    """PS3.3 C.11.2.1.2.1, as written there, with output range [0, 1]."""
    if x <= center - 0.5 - (width - 1) / 2:
        return 0.0
    if x > center - 0.5 + (width - 1) / 2:
        return 1.0
    return (x - (center - 0.5)) / (width - 1) + 0.5


@pytest.mark.parametrize("preset", sorted(WINDOW_PRESETS))
def test_window_presets_follow_the_standard(preset):
    center, width = WINDOW_PRESETS[preset]
    edges = [center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2]
    values = np.array(edges + [center, center - 0.5, -3000, 3000, edges[0] + 1, edges[1] - 1], np.float32)
    expected = [_window_by_the_standard(float(v), center, width) for v in values]
    np.testing.assert_allclose(window(values, center, width), expected, atol=1e-6)


def test_apply_window_uses_hounsfield_units_and_the_files_own_window():
    stored = np.array([[0, 500, 1000, 1500, 2000, 4095]], np.uint16)
    data = _ct(stored, 1.0, -1024.0, WindowCenter=[50, 300], WindowWidth=[350, 1500])
    image = read_image(data)
    hu = stored.astype(np.float64) - 1024
    ref = lambda c, w: [[_window_by_the_standard(v, c, w) for v in row] for row in hu]  # noqa: E731
    np.testing.assert_allclose(apply_window(image, "lung"), ref(-600, 1500), atol=1e-6)
    np.testing.assert_allclose(apply_window(image, "file"), ref(50, 350), atol=1e-6)
    with pytest.raises(DicomError, match="no Window Center"):
        apply_window(read_image(_ct(stored, 1.0, 0.0)), "file")


@pytest.mark.parametrize("shape,spacing,target", [((20, 30), (0.7, 0.7), (1.0, 1.0)),
                                                  ((6, 20, 30), (2.5, 0.7, 0.8), (1.0, 1.5, 1.5))])
def test_resample_is_linear_interpolation_on_the_physical_grid(shape, spacing, target):
    values = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    out, achieved = resample(values, spacing, target_spacing=target)
    axes = [np.arange(n) * s for n, s in zip(shape, spacing)]
    for n_out, a, t, old in zip(out.shape, achieved, target, axes):
        assert (n_out - 1) * a == pytest.approx(old[-1])  # first and last samples kept
        assert abs(a - t) <= t / 2
    grid = np.meshgrid(*[np.arange(n) * a for n, a in zip(out.shape, achieved)], indexing="ij")
    points = np.stack([np.minimum(g, ax[-1]) for g, ax in zip(grid, axes)], axis=-1)
    expected = RegularGridInterpolator(axes, values.astype(np.float64))(points)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_resample_to_a_size():
    out, achieved = resample(np.zeros((10, 12), np.float32), (1.0, 2.0), size=(4, 23))
    assert out.shape == (4, 23) and achieved == (3.0, 1.0)


def _slice(position, stored, series_uid, orientation=(1, 0, 0, 0, 1, 0), **attributes) -> bytes:
    return _ct(np.asarray(stored, np.uint16), 1.0, -1024.0, ImagePositionPatient=list(position),
               ImageOrientationPatient=list(orientation), PixelSpacing=[0.5, 0.75],
               SeriesInstanceUID=series_uid, **attributes)


def _write_series(tmp_path, positions, orientation=(1, 0, 0, 0, 1, 0), uids=None):
    series = generate_uid()
    paths = []
    for i, position in enumerate(positions):
        path = tmp_path / f"slice{i}.dcm"
        path.write_bytes(_slice(position, np.full((3, 4), 100 * i, np.uint16),
                                uids[i] if uids else series, orientation))
        paths.append(path)
    return paths


def test_read_series_orders_slices_along_the_normal(tmp_path):
    # Oblique plane: row direction x, column direction (0, cos, sin); normal (0, -sin, cos).
    c, s = np.cos(0.3), np.sin(0.3)
    orientation = (1, 0, 0, 0, c, s)
    normal = np.cross(orientation[:3], orientation[3:])
    offsets = [4.0, 0.0, 8.0, 2.0, 6.0]  # files written out of order
    positions = [tuple((10 + d * normal).tolist()) for d in offsets]
    paths = _write_series(tmp_path, positions, orientation)
    series = read_series(paths)
    order = np.argsort(offsets)
    expected = np.stack([np.full((3, 4), 100 * i, np.float32) - 1024 for i in order])
    np.testing.assert_array_equal(series.volume, expected)
    assert series.spacing == pytest.approx((2.0, 0.5, 0.75))
    assert series.paths == tuple(str(paths[i]) for i in order)
    assert series.origin == pytest.approx(positions[order[0]])


def test_read_series_rejects_a_mixed_series(tmp_path):
    paths = _write_series(tmp_path, [(0, 0, z) for z in range(3)],
                          uids=[generate_uid(), None, None])
    paths[1].write_bytes(_slice((0, 0, 1), np.zeros((3, 4)), "1.2.3.4"))
    paths[2].write_bytes(_slice((0, 0, 2), np.zeros((3, 4)), "1.2.3.4"))
    with pytest.raises(DicomError, match="mixed series: series_instance_uid") as info:
        read_series(paths)
    assert info.value.path == str(paths[1])


def test_read_series_rejects_mixed_orientation_duplicates_and_gaps(tmp_path):
    paths = _write_series(tmp_path, [(0, 0, z) for z in (0, 1, 2)])
    paths[2].write_bytes(_slice((0, 0, 2), np.zeros((3, 4)), read_image(paths[0]).series_instance_uid,
                                orientation=(0, 1, 0, 1, 0, 0)))
    with pytest.raises(DicomError, match="mixed series: image_orientation"):
        read_series(paths)
    for case, positions, reason in [("duplicate", (0, 1, 1), "same position"),
                                    ("gap", (0, 1, 2, 4, 5), "missing slice")]:
        (tmp_path / case).mkdir()
        with pytest.raises(DicomError, match=reason):
            read_series(_write_series(tmp_path / case, [(0, 0, z) for z in positions]))
