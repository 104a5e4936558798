"""DICOM greyscale display: the VOI LUT Sequence (PS3.3 C.11.2.1.1), windows (C.11.2.1.2) and pixel padding
(PixelPaddingValue / PixelPaddingRangeLimit, PS3.3 C.7.5.1.1.2), on small synthetic files built with pydicom."""

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


# ------------------------------------------------------------------------------------------------ padding


def test_signed_padding_does_not_set_the_minimum_of_the_stretch(tmp_path, write):
    a = np.array([[-2000, -2000, 0], [100, 200, -2000]])
    rec = read_image(write(tmp_path / "pad.dcm", a, signed=True, bits_stored=16, padding=-2000))
    # min-max over {0, 100, 200}; padding is black
    assert rec.array.tolist() == [[0, 0, 0], [128, 255, 0]]


def test_a_padding_range_is_padding_from_either_end(tmp_path, write):
    # PixelPaddingValue -1000 and PixelPaddingRangeLimit -3000: every stored value in [-3000, -1000] is padding
    a = np.array([[-3000, -1500, -1000, -999], [-499, 1, 1, 1]])
    rec = read_image(write(tmp_path / "range.dcm", a, signed=True, bits_stored=16, padding=-1000,
                            padding_limit=-3000))
    # min-max over -999..1: -499 -> 127.5 -> 128
    assert rec.array.tolist() == [[0, 0, 0, 0], [128, 255, 255, 255]]


def test_padding_is_black_under_monochrome1_and_under_a_window(tmp_path, write):
    # MONOCHROME1: high stored values are dark; padding 4095 (the darkest, C.7.5.1.1.2) stays black, and the stretch
    # runs over 0..200 only
    a = np.array([[4095, 0, 100, 200]])
    rec = read_image(write(tmp_path / "m1.dcm", a, photometric="MONOCHROME1", padding=4095))
    assert rec.array.tolist() == [[0, 255, 127, 0]]
    # a window: padding (stored 0, -5 after the rescale) inside the window (LINEAR, centre 0, width 11: -5 -> 13,
    # 0 -> 140) is black all the same
    a = np.array([[0, 0, 5, 10]])
    rec = read_image(write(tmp_path / "w.dcm", a, padding=0, window=(0, 11), rescale=(1, -5)))
    assert rec.array.tolist() == [[0, 0, 140, 255]]


def test_padding_is_matched_on_stored_values_before_the_modality_lut(tmp_path, write):
    a = np.array([[0, 10, 20, 30]])
    rec = read_image(write(tmp_path / "r.dcm", a, padding=0, rescale=(2, -1024)))
    assert rec.array.tolist() == [[0, 0, 128, 255]]


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_an_image_of_padding_only_is_black(tmp_path, write, photometric):
    a = np.full((2, 3), 7)
    rec = read_image(write(tmp_path / "all.dcm", a, photometric=photometric, padding=7))
    assert rec.array.tolist() == [[0] * 3] * 2


def test_a_us_padding_value_of_signed_pixels_is_read_as_twos_complement(tmp_path, write):
    # -2000 written as US 63536 (an exporter's VR for a signed image): the same padding
    import pydicom

    path = write(tmp_path / "us.dcm", np.array([[-2000, 0, 100, 200]]), signed=True, bits_stored=16)
    ds = pydicom.dcmread(path)
    ds.add_new(0x00280120, "US", 63536)
    ds.save_as(path, enforce_file_format=True)
    assert read_image(path).array.tolist() == [[0, 0, 128, 255]]


# ------------------------------------------------------------------------------------------------ bit depth


@pytest.mark.parametrize(("bits", "stored", "shown"), [(1, [0, 1, 1, 0], [0, 255, 255, 0]),
                                                       (6, [0, 21, 42, 63], [0, 85, 170, 255])])
def test_stored_values_of_under_8_bits_span_their_range(tmp_path, bits, stored, shown):
    # a 1-bit image (a drawn mask, a scanned form) read as 0 and 1 would be black; 8 bits kept as stored
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels.utils import pack_bits
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 4, 1, "MONOCHROME2"
    ds.BitsAllocated = 1 if bits == 1 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    a = np.array([stored], dtype=np.uint8)
    ds.PixelData = pack_bits(a) if bits == 1 else a.tobytes()
    ds.save_as(tmp_path / "b.dcm", enforce_file_format=True)
    assert read_image(tmp_path / "b.dcm").array.tolist() == [shown]
