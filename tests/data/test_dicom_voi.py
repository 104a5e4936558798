"""DICOM greyscale display: the VOI LUT Sequence (PS3.3 C.11.2.1.1) and windows (C.11.2.1.2), on small
synthetic files built with pydicom."""

from __future__ import annotations

import numpy as np
import pytest

from breastdx.data.images import read_image


@pytest.fixture
def write(grey_dicom):
    """``write(path, arr, photometric, signed, bits_stored, voi_luts, window, rescale, padding, padding_limit)``:
    :func:`grey_dicom`'s file (16 bits allocated, signed values stored as two's complement) with, where given,
    PixelRepresentation 1, the VOI LUT Sequence items ``(descriptor, data)``, ``window`` ``(centre, width)``,
    ``rescale`` ``(slope, intercept)``, PixelPaddingValue and PixelPaddingRangeLimit."""
    import pydicom
    from pydicom.dataset import Dataset

    def write(path, arr, photometric="MONOCHROME2", signed=False, bits_stored=12, voi_luts=(), window=None,
              rescale=None, padding=None, padding_limit=None):
        grey_dicom(path, np.asarray(arr), photometric=photometric, spacing=None, window=window,
                   bits_stored=bits_stored)
        ds = pydicom.dcmread(path)
        ds.PixelRepresentation = int(signed)
        if voi_luts:
            ds.VOILUTSequence = []
            for descriptor, data in voi_luts:
                item = Dataset()
                item.add_new(0x00283002, "US", [int(v) for v in descriptor])  # LUTDescriptor
                item.add_new(0x00283006, "US", [int(v) for v in data])  # LUTData
                ds.VOILUTSequence.append(item)
        if rescale is not None:
            ds.RescaleSlope, ds.RescaleIntercept = rescale
        vr = "SS" if signed else "US"
        if padding is not None:
            ds.add_new(0x00280120, vr, padding)  # PixelPaddingValue
        if padding_limit is not None:
            ds.add_new(0x00280121, vr, padding_limit)  # PixelPaddingRangeLimit
        ds.save_as(path, enforce_file_format=True)
        return path

    return write


# ------------------------------------------------------------------------------------------------ VOI LUT


def test_a_voi_lut_without_a_window_is_applied_and_scaled_by_its_bit_depth(tmp_path, write):
    # 3 entries from input 100, 12-bit entries: <=100 -> 0, 101 -> 2048, >=102 -> 4095 (C.11.2.1.1), shown over
    # the LUT's output range 0..2^12-1, not stretched over its data
    a = np.array([[0, 100, 101], [102, 4095, 50]])
    rec = read_image(write(tmp_path / "lut.dcm", a, voi_luts=[((3, 100, 12), (0, 2048, 4095))]))
    assert rec.array.tolist() == [[0, 0, 128], [255, 255, 0]]


def test_a_voi_lut_of_8_bit_entries_maps_inputs_past_its_end_to_its_last_entry(tmp_path, write):
    # pydicom 3.0's apply_voi puts input - first_map in an array of the LUT's own dtype: with 8-bit entries, 356 - 100
    # = 256 would wrap to 0 and 400 to 44; C.11.2.1.1 maps every input past the last entry to the last entry
    a = np.array([[100, 150, 355, 356, 400, 4000]])
    lut = np.arange(256)
    rec = read_image(write(tmp_path / "lut8.dcm", a, voi_luts=[((256, 100, 8), lut)]))
    assert rec.array.tolist() == [[0, 50, 255, 255, 255, 255]]


def test_the_first_voi_lut_is_used_and_a_lut_before_a_window(tmp_path, write):
    # pydicom's rule (apply_voi_lut, prefer_lut=True, index 0): the LUT when both are given, the first of several
    a = np.array([[0, 1, 2, 3]])
    luts = [((4, 0, 8), (0, 10, 20, 30)), ((4, 0, 8), (255, 200, 100, 0))]
    rec = read_image(write(tmp_path / "two.dcm", a, voi_luts=luts, window=(1000, 100)))
    assert rec.array.tolist() == [[0, 10, 20, 30]]


def test_a_voi_lut_reads_the_modality_lut_output_and_monochrome1_inverts_its_result(tmp_path, write):
    # stored 0..3, RescaleSlope 2, RescaleIntercept 10: LUT inputs 10, 12, 14, 16
    a = np.array([[0, 1, 2, 3]])
    lut = ((8, 10, 8), (0, 1, 100, 2, 200, 3, 250, 4))
    rec = read_image(write(tmp_path / "m1.dcm", a, photometric="MONOCHROME1", voi_luts=[lut], rescale=(2, 10)))
    assert rec.array.tolist() == [[255, 155, 55, 5]]


def test_a_window_keeps_its_golden_values_through_pydicom(tmp_path, write):
    # LINEAR (C.11.2.1.2.1), centre 2000 width 1001: <= 1500 -> 0, > 2500 -> 255, 2000 -> (0.5 / 1000 + 0.5) * 255
    a = np.array([[1000, 1500, 1750, 2000, 2500, 3000]])
    rec = read_image(write(tmp_path / "w.dcm", a, window=(2000, 1001)))
    assert rec.array.tolist() == [[0, 0, 64, 128, 255, 255]]


def test_a_malformed_voi_lut_falls_back_to_the_window(tmp_path, write, caplog):
    # 9 bits per entry: no depth C.11.2.1.1 allows (8 or 10-16); the window applies instead, and a log says so
    a = np.array([[1000, 1500, 1750, 2000, 2500, 3000]])
    caplog.set_level("WARNING", logger="breastdx.data.dicom_pixels")
    rec = read_image(write(tmp_path / "bad.dcm", a, voi_luts=[((2, 0, 9), (0, 511))], window=(2000, 1001)))
    assert rec.array.tolist() == [[0, 0, 64, 128, 255, 255]]
    assert "VOI LUT" in caplog.text and "bad.dcm" in caplog.text
