"""Ultrasound DICOM as scanners export it: calibration in the Sequence of Ultrasound Regions, cine loops (several
frames), PACS file names without an extension, and the patient data in their headers, which no error, warning or
log record of a read quotes."""

from pathlib import Path

import numpy as np
import pytest

from breastdx.data.images import read_image, read_image_bytes
from breastdx.data.image_files import list_images


def _region(delta_cm: tuple[float, float], box: tuple[int, int, int, int], units: tuple[int, int] = (3, 3)):
    from pydicom.dataset import Dataset

    r = Dataset()
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX, r.PhysicalDeltaY = delta_cm
    r.RegionSpatialFormat, r.RegionDataType = 1, 1
    return r


def _us_dicom(path: Path, frames: np.ndarray, regions=(), pixel_spacing=None, **elements) -> Path:
    """An 8-bit MONOCHROME2 ultrasound DICOM of ``frames`` ``(H, W)`` or ``(F, H, W)``, with ``elements`` (keyword:
    value; a value in bytes is written as it is: a malformed value, which pydicom would refuse to write)."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.tag import Tag
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, UltrasoundMultiFrameImageStorage, generate_uid

    multi = frames.ndim == 3
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = frames.shape[-2:]
    if multi:
        ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if regions:
        ds.SequenceOfUltrasoundRegions = Sequence(list(regions))
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    for keyword, value in elements.items():
        if isinstance(value, bytes):
            tag = Tag(keyword)
            ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
        else:
            setattr(ds, keyword, value)
    ds.PixelData = frames.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _disc(shape=(61, 81), centre=(30, 40), radius=18) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.where((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2, 220, 20).astype(np.uint8)


def test_spacing_from_the_ultrasound_region_holding_the_image(tmp_path):
    # the 2-D image region at 0.008 cm = 0.08 mm per pixel; a Doppler strip (x in seconds) and PixelSpacing are ignored
    regions = [_region((0.008, 0.008), (0, 0, 80, 45)), _region((0.01, 0.02), (0, 46, 80, 60), units=(4, 3))]
    rec = read_image(_us_dicom(tmp_path / "us.dcm", _disc(), regions, pixel_spacing=(0.5, 0.5)))
    assert rec.spacing_mm == pytest.approx((0.08, 0.08)) and rec.spacing_note == ""
    # anisotropic: row spacing from PhysicalDeltaY, column spacing from PhysicalDeltaX
    rec = read_image(_us_dicom(tmp_path / "an.dcm", _disc(), [_region((0.01, 0.02), (0, 0, 80, 60))]))
    assert rec.spacing_mm == pytest.approx((0.2, 0.1))


def test_disagreeing_regions_give_no_spacing_and_say_why(tmp_path):
    # two regions over the image centre with different calibrations: a lesion could be in either
    regions = [_region((0.008, 0.008), (0, 0, 80, 60)), _region((0.01, 0.01), (20, 10, 60, 50))]
    path = _us_dicom(tmp_path / "two.dcm", _disc(), regions, pixel_spacing=(0.5, 0.5))
    for rec in (read_image(path), read_image_bytes(path.read_bytes(), "two.dcm")):
        assert rec.spacing_mm is None
        assert "disagree" in rec.spacing_note and "0.08 x 0.08 mm" in rec.spacing_note and "0.1 x 0.1 mm" in rec.spacing_note
    # the same calibrations, but only one region holds the image centre: that one is taken
    regions = [_region((0.008, 0.008), (0, 0, 80, 60)), _region((0.01, 0.01), (0, 0, 10, 10))]
    assert read_image(_us_dicom(tmp_path / "inset.dcm", _disc(), regions)).spacing_mm == pytest.approx((0.08, 0.08))
    # regions that agree within 0.1% are one calibration
    regions = [_region((0.008, 0.008), (0, 0, 80, 60)), _region((0.0080001, 0.008), (0, 0, 80, 60))]
    assert read_image(_us_dicom(tmp_path / "same.dcm", _disc(), regions)).spacing_mm == pytest.approx((0.08, 0.08))


def test_pixel_spacing_without_a_usable_region(tmp_path):
    rec = read_image(_us_dicom(tmp_path / "ps.dcm", _disc(), pixel_spacing=(0.1, 0.25)))
    assert rec.spacing_mm == (0.1, 0.25) and rec.spacing_note == ""
    # a region in other units (seconds x cm/s: a spectral Doppler strip) is no calibration of the image
    regions = [_region((0.01, 0.5), (0, 0, 80, 60), units=(4, 7))]
    assert read_image(_us_dicom(tmp_path / "dop.dcm", _disc(), regions, pixel_spacing=(0.1, 0.25))).spacing_mm == (0.1, 0.25)
    assert read_image(_us_dicom(tmp_path / "none.dcm", _disc())).spacing_mm is None


@pytest.mark.parametrize("spacing", [("0", "0"), ("-0.1", "-0.1"), ("1e30", "1e30"), ("nan", "nan"), ("0.1", "inf"),
                                     ("1e-30", "1e-30")])
def test_a_placeholder_pixel_spacing_gives_no_mm_figures_and_says_why(tmp_path, spacing):
    # 0, negative, absurd or not finite: every area would be 0 or astronomic (and NaN is no JSON number)
    path = _us_dicom(tmp_path / "ps.dcm", _disc(), pixel_spacing=spacing)
    for rec in (read_image(path), read_image_bytes(path.read_bytes(), "ps.dcm")):
        assert rec.spacing_mm is None
        assert rec.spacing_note.startswith("no mm figures: the file's PixelSpacing gives a pixel spacing of ")
        assert rec.spacing_note.endswith("not a calibration (expected 1e-05 to 10 mm per pixel)")
    regions = [_region((1e30, 1e30), (0, 0, 80, 60))]  # a region's delta in cm: 1e31 mm
    rec = read_image(_us_dicom(tmp_path / "r.dcm", _disc(), regions))
    assert rec.spacing_mm is None and "the file's the ultrasound regions' PhysicalDeltaX/Y gives" not in rec.spacing_note
    assert rec.spacing_note.startswith("no mm figures: the file's ultrasound regions (PhysicalDeltaX/Y) give")


def test_8_bit_with_an_identity_rescale_keeps_its_values(tmp_path):
    """RescaleSlope 1 and RescaleIntercept 0 (the identity modality LUT, written by many exporters) made 8-bit pixels
    'wide', so they were stretched from their own minimum and maximum to 0-255 instead of kept as stored."""
    stored = (np.arange(61 * 81).reshape(61, 81) % 200 + 20).astype(np.uint8)  # 20-219: a stretch would show
    path = _us_dicom(tmp_path / "identity.dcm", stored, RescaleSlope=1, RescaleIntercept=0)
    np.testing.assert_array_equal(read_image(path).array, stored)
    np.testing.assert_array_equal(read_image_bytes(path.read_bytes(), "identity.dcm").array, stored)
    inverted = _us_dicom(tmp_path / "mono1.dcm", stored, RescaleSlope=1, RescaleIntercept=0,
                         PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(read_image(inverted).array, 255 - stored)
    doubled = read_image(_us_dicom(tmp_path / "slope2.dcm", stored, RescaleSlope=2, RescaleIntercept=0)).array
    assert (doubled.min(), doubled.max()) == (0, 255)  # a modality LUT that changes the values: rescaled as before


def test_cine_loop_gives_its_first_frame(tmp_path):
    frames = np.stack([_disc(), np.full((61, 81), 7, np.uint8), np.full((61, 81), 9, np.uint8)])
    path = _us_dicom(tmp_path / "cine.dcm", frames, [_region((0.008, 0.008), (0, 0, 80, 60))])
    rec = read_image(path)
    np.testing.assert_array_equal(rec.array, frames[0])
    assert rec.frame == (1, 3) and rec.spacing_mm == pytest.approx((0.08, 0.08))
    assert read_image_bytes(path.read_bytes(), "cine.dcm").frame == (1, 3)
    assert read_image(_us_dicom(tmp_path / "one.dcm", _disc())).frame is None


def test_pacs_names_without_an_extension_are_found_in_folders(tmp_path):
    folder = tmp_path / "export"
    (folder / "SE1").mkdir(parents=True)
    _us_dicom(folder / "SE1" / "IM00001", _disc())
    _us_dicom(folder / "1.2.840.10008.5.1", _disc())
    (folder / "DICOMDIR_notes").write_text("not an image")
    (folder / "README").write_bytes(b"x" * 200)
    (folder / "scan.dcm.bak").write_bytes((folder / "SE1" / "IM00001").read_bytes())  # a backup is not an input
    assert [p.relative_to(folder).as_posix() for p in list_images([folder])] == ["1.2.840.10008.5.1", "SE1/IM00001"]
    assert read_image(folder / "SE1" / "IM00001").source_format == "DICOM"


def test_decoder_workers_carry_the_note_and_the_frame(tmp_path):
    from breastdx.data.decode_worker import DecoderPool

    regions = [_region((0.008, 0.008), (0, 0, 80, 60)), _region((0.01, 0.01), (20, 10, 60, 50))]
    path = _us_dicom(tmp_path / "two.dcm", np.stack([_disc(), _disc()]), regions)
    with DecoderPool(workers=1, timeout_s=5) as pool:
        rec = pool.read_image_bytes(path.read_bytes(), "two.dcm")
    assert rec.frame == (1, 2) and rec.spacing_mm is None and "disagree" in rec.spacing_note


def test_predict_busi_seg_on_a_calibrated_cine_loop(tmp_path):
    """The issue's target: calibrated at 0.08 mm per pixel through its ultrasound region, a lesion's area in mm² is
    its pixel area x 0.0064 (within 1%), its longest diameter in mm its diameter in pixels x 0.08."""
    import csv
    import json

    import torch

    from breastdx.data.transforms import Preprocessing
    from breastdx.inference.predictor import Postprocessing, SegmentationPredictor
    from breastdx.inference.writers import write_segmentation_predictions
    from breastdx.models.saved import write_meta

    class Bright(torch.nn.Module):  # lesion where the image is brighter than its mean
        def forward(self, x):
            return torch.cat([torch.zeros_like(x), 50 * (x - x.mean(dim=(2, 3), keepdim=True))], dim=1)

    write_meta(tmp_path, {"task": "busi-seg", "architecture": "unet", "architecture_args": {}, "in_channels": 1,
                          "weights_file": "model.safetensors", "class_names": ["background", "lesion"],
                          "preprocessing": Preprocessing(image_size=64).to_meta(), "threshold": 0.5,
                          "postprocessing": Postprocessing().to_meta()})
    predictor = SegmentationPredictor(Bright(), json.loads((tmp_path / "meta.json").read_text()))
    folder = tmp_path / "export"
    folder.mkdir()
    frames = np.stack([_disc(), np.full((61, 81), 7, np.uint8)])
    _us_dicom(folder / "IM00001", frames, [_region((0.008, 0.008), (0, 0, 80, 60))], pixel_spacing=(0.5, 0.5))
    regions = [_region((0.008, 0.008), (0, 0, 80, 60)), _region((0.01, 0.01), (20, 10, 60, 50))]
    _us_dicom(folder / "IM00002", _disc(), regions)
    run = tmp_path / "run"
    run.mkdir()
    rows, failures, _ = write_segmentation_predictions(predictor, [folder], run, overlays=False, workers=1)
    assert not failures
    with open(run / "predictions.csv", newline="") as f:
        first, second = list(csv.DictReader(f))
    area_px = int(first["lesion_area_px"])
    assert abs(area_px - np.pi * 18 ** 2) < 0.05 * np.pi * 18 ** 2  # the disc, found
    assert float(first["lesion_area_mm2"]) == pytest.approx(area_px * 0.0064, rel=0.01)
    assert float(first["lesion_max_diameter_px"]) == pytest.approx(37, abs=2.5)  # 2 x 18 + 1 across, via 64 px
    assert float(first["lesion_max_diameter_mm"]) == pytest.approx(float(first["lesion_max_diameter_px"]) * 0.08, rel=0.01)
    assert (first["spacing_mm"], first["spacing_note"], first["frame"]) == ("0.08x0.08", "", "1 of 2")
    assert second["lesion_area_mm2"] == second["lesion_max_diameter_mm"] == second["spacing_mm"] == ""
    assert "disagree" in second["spacing_note"] and second["frame"] == "" and int(second["lesion_area_px"]) > 0


def test_frame_items_choose_a_cine_loop_frame(tmp_path):
    """`<file>#frame=<k>` reads frame k alone and says so; --frame all gives one item per frame, in frame order;
    a frame past the loop's end, or asked of a single image, is an error that names the file."""
    from breastdx.data.dicom_frames import check_frame_option, expand_frames, frame_item
    from breastdx.data.images import ImageReadError

    frames = np.stack([np.full((20, 30), v, np.uint8) for v in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110)])
    cine = _us_dicom(tmp_path / "cine.dcm", frames)
    single = _us_dicom(tmp_path / "single.dcm", _disc())
    png = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(_disc()).save(png)
    rec = read_image(f"{cine}#frame=3")
    assert rec.frame == (3, 11) and int(rec.array.mean()) == 30 and str(rec.path).endswith("cine.dcm#frame=3")
    assert read_image(cine).frame == (1, 11)
    with pytest.raises(ImageReadError, match=r"frame 12 asked, but the file holds 11 frame\(s\) \(1 to 11\)"):
        read_image(f"{cine}#frame=12")
    with pytest.raises(ImageReadError, match=r"frame 2 asked, but the file holds 1 frame\(s\)"):
        read_image(f"{single}#frame=2")
    with pytest.raises(ImageReadError, match="holds a single image, not a cine loop"):
        read_image(f"{single}#frame=1")
    with pytest.raises(ImageReadError, match="frames are read from multi-frame DICOM files; this is PNG"):
        read_image(f"{png}#frame=2")
    with pytest.raises(ImageReadError, match="frames are numbered from 1"):  # was 'no such file'
        read_image(f"{cine}#frame=0")
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(f"{tmp_path / 'missing.dcm'}#frame=0")
    items = list_images(expand_frames(list_images([tmp_path]), "all"))
    assert [p.name for p in items] == ["a.png", *[f"cine.dcm#frame={k}" for k in range(1, 12)], "single.dcm"]
    assert [p.name for p in expand_frames([cine, single], "7")] == ["cine.dcm#frame=7", "single.dcm"]
    assert expand_frames([cine], "first") == [cine] and frame_item(cine) is None
    with pytest.raises(ValueError, match="--frame takes 'first', 'all' or a frame number"):
        check_frame_option("0")


def test_predict_every_frame_of_a_cine_loop(tmp_path):
    """`breastdx predict busi-seg --frame all` writes one row per frame, with the frame column and a mask per frame."""
    import csv

    from typer.testing import CliRunner

    from breastdx.cli import app

    frames = np.stack([_disc(radius=r) for r in (10, 14, 18)])
    _us_dicom(tmp_path / "IM00001", frames, [_region((0.008, 0.008), (0, 0, 80, 60))])
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["predict", "busi-seg", str(tmp_path / "IM00001"), "--frame", "all", "--out",
                                      str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["frame"] for r in rows] == ["1 of 3", "2 of 3", "3 of 3"]
    assert [r["mask"] for r in rows] == [f"masks/IM00001_frame{k}_mask.png" for k in (1, 2, 3)]
    assert all((out / r["mask"]).is_file() for r in rows)
    out2 = tmp_path / "pred2"
    result = CliRunner().invoke(app, ["predict", "busi-seg", str(tmp_path / "IM00001"), "--frame", "2", "--out",
                                      str(out2)])
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader(open(out2 / "predictions.csv")))
    assert row["frame"] == "2 of 3" and row["source"].endswith("IM00001#frame=2")


def test_a_dicom_cd_export_reads_its_images_and_not_its_dicomdir(tmp_path, caplog):
    """A DICOM CD's folder (DICOMDIR and PT*/ST*/SE*/IM* files) listed its DICOMDIR index as an input that 'could not be
    used' (no Rows/Columns), so every such batch ended with a failure and exit status 1."""
    import pydicom
    from pydicom.fileset import FileSet

    from breastdx.data.images import read_images

    fs = FileSet()
    for k in range(2):
        ds = pydicom.dcmread(_us_dicom(tmp_path / f"scan{k}.dcm", _disc(radius=10 + 5 * k)))
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "anon", pydicom.uid.generate_uid(), "1.2.3"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20240101", "1200", "1", 1, k + 1
        fs.add(ds)
    fs.write(tmp_path / "cd")
    assert (tmp_path / "cd" / "DICOMDIR").is_file()
    with caplog.at_level("INFO", logger="breastdx.data.image_files"):
        items = list_images([tmp_path / "cd"])
    assert len(items) == 2 and all(p.name.startswith("IM") for p in items)
    assert any("DICOMDIR" in r.getMessage() for r in caplog.records)
    records, failures = read_images(items)
    assert len(records) == 2 and failures == []
    assert list_images([tmp_path / "cd" / "DICOMDIR"]) == [tmp_path / "cd" / "DICOMDIR"]  # named: tried, reported


# -- patient data: no message quotes a header value ------------------------------------------------------------------

PATIENT = {"PatientName": "Doeling^Janelle", "PatientID": "MRN4711", "PatientBirthDate": "19800101",
           "AccessionNumber": "ACC0042", "InstitutionName": "St Elsewhere Hospital"}
IDENTIFIERS = ("Doeling", "Janelle", "MRN4711", "19800101", "ACC0042", "Elsewhere")

MALFORMED = {  # a patient value in an element breastdx or pydicom reads, malformed
    "birth date not a DA (never read)": {"PatientBirthDate": "Janelle1980"},
    "NumberOfFrames": {"NumberOfFrames": b"MRN4711 "},
    "PhotometricInterpretation": {"PhotometricInterpretation": "DOELING JANELLE"},
    "SpecificCharacterSet": {"SpecificCharacterSet": b"Doeling "},
    "PixelSpacing": {"PixelSpacing": b"Doeling\\1980"},
    "RescaleSlope": {"RescaleSlope": b"Janelle "},
    "WindowCenter": {"WindowCenter": b"MRN4711 ", "WindowWidth": b"19800101"},
}


def _patient_dicom(path: Path, **elements) -> Path:
    """``_disc()`` as an ultrasound DICOM carrying :data:`PATIENT`, and ``elements``."""
    import warnings

    with warnings.catch_warnings():  # pydicom warns when it writes a malformed value: written all the same
        warnings.simplefilter("ignore")
        return _us_dicom(path, _disc(), **{**PATIENT, **elements})


def _said(read, caplog) -> list[str]:
    """What reading says: the error's message, every warning and every log record (any logger, DEBUG up)."""
    import logging
    import warnings

    caplog.clear()
    caplog.set_level(logging.DEBUG)
    said = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # in front of every other filter: nothing is hidden by a filter of the test
        try:
            read()
        except Exception as err:  # noqa: BLE001 - whatever it is, its message is what a client sees
            said.append(f"{type(err).__name__}: {err}")
    return said + [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]


def _quoted(said: list[str]) -> list[str]:
    return [text for text in said if any(v.lower() in text.lower() for v in IDENTIFIERS)]


@pytest.mark.parametrize("case", list(MALFORMED))
def test_no_header_value_in_errors_warnings_or_logs(tmp_path, caplog, case):
    """pydicom's words quote values ("Invalid value for VR IS: 'MRN4711'", "Unknown (0028,0004) 'Photometric
    Interpretation' value '...'", "Unknown encoding '...'"); the ImageReadError (which the service answers and the CLI
    prints), the warnings and the log records of a read say none of them."""
    import pydicom

    path = _patient_dicom(tmp_path / "IM00001", **MALFORMED[case])
    for read in (lambda: read_image(path), lambda: read_image_bytes(path.read_bytes(), "upload.dcm")):
        said = _said(read, caplog)
        assert _quoted(said) == [], said
    with pydicom.config.strict_reading():  # a library user's choice: pydicom raises where it would warn
        said = _said(lambda: read_image(path), caplog)
    assert _quoted(said) == [], said


def test_what_is_withheld_is_counted_and_errors_still_say_what_failed(tmp_path, caplog):
    import pydicom

    from breastdx.data.images import ImageReadError

    path = _patient_dicom(tmp_path / "IM00001", **MALFORMED["NumberOfFrames"])
    with pytest.warns(UserWarning, match="MRN4711"):  # the file is as malformed as meant: pydicom quotes it
        pydicom.dcmread(path).get("NumberOfFrames")
    caplog.set_level("INFO", logger="breastdx.data.dicom_pixels")
    with pytest.raises(ImageReadError) as e:
        read_image(path)
    assert str(e.value) == (f"{path}: cannot decode the DICOM pixel data (ValueError; transfer syntax "
                            f"1.2.840.10008.1.2.1, Explicit VR Little Endian); the file may be truncated, or its pixel "
                            f"data may not match its header (Rows, Columns, bits, frames).")
    assert e.value.__context__ is None and e.value.__cause__ is None  # no pydicom exception hangs on it
    assert any(r.getMessage() == f"{path}: 2 warning(s) of pydicom withheld (malformed header values or character "
               f"sets; their text could quote patient data)" for r in caplog.records)
    path = _patient_dicom(tmp_path / "IM00002", **MALFORMED["SpecificCharacterSet"])
    with pydicom.config.strict_reading(), pytest.raises(ImageReadError) as e:  # pydicom raised "LookupError: unknown
        read_image(path)  # encoding: Doeling" at the header
    assert str(e.value) == f"{path}: cannot read the DICOM header (LookupError); the file is truncated or corrupt."
    data = _patient_dicom(tmp_path / "IM00003").read_bytes()
    with pytest.raises(ImageReadError, match=r"^cut\.dcm: cannot decode the DICOM pixel data \(ValueError;"):
        read_image_bytes(data[:-30], "cut.dcm")


def test_a_valid_file_with_patient_data_decodes_as_before_and_says_nothing(tmp_path, caplog):
    path = _patient_dicom(tmp_path / "IM00001", PixelSpacing=[0.1, 0.2])
    said = []
    for read in (lambda: read_image(path), lambda: read_image_bytes(path.read_bytes(), "upload.dcm")):
        said += _said(read, caplog)
        rec = read()
        np.testing.assert_array_equal(rec.array, _disc())  # 8-bit MONOCHROME2: the values as stored
        assert (rec.spacing_mm, rec.source_mode, rec.frame) == ((0.1, 0.2), "MONOCHROME2", None)
    assert said == []


def test_withholding_is_for_the_reading_thread_only(caplog):
    """Another thread's warnings and pydicom log records, said while a file is read, come out as before."""
    import logging
    import threading
    import warnings

    from pydicom.misc import warn_and_log

    from breastdx.data.dicom_pixels import withhold_pydicom

    inside, done, counted = threading.Event(), threading.Event(), []

    def reader():
        with withhold_pydicom("reader.dcm"):
            inside.set()
            done.wait(10)
            warn_and_log("withheld")

    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=reader)
        thread.start()
        assert inside.wait(10)
        warn_and_log("said outside the read")
        done.set()
        thread.join(10)
        counted.append(len(caught))
    assert [str(w.message) for w in caught] == ["said outside the read"]
    messages = [r.getMessage() for r in caplog.records]
    assert "said outside the read" in messages and "withheld" not in messages
    assert "reader.dcm: 1 warning(s) of pydicom withheld" in " ".join(messages)


def test_decoder_workers_say_no_header_value(tmp_path, capfd):
    """The service decodes uploads in worker processes, whose stderr (where pydicom's warnings and log records would
    go, with the values) is the service's log."""
    from breastdx.data.decode_worker import DecoderPool
    from breastdx.data.images import ImageReadError

    said = []
    with DecoderPool(workers=1, timeout_s=20) as pool:
        for case in ("NumberOfFrames", "SpecificCharacterSet", "PixelSpacing"):
            data = _patient_dicom(tmp_path / f"{case}.dcm", **MALFORMED[case]).read_bytes()
            capfd.readouterr()
            try:
                pool.read_image_bytes(data, "upload.dcm")
            except ImageReadError as err:
                said.append(str(err))
            said.extend(capfd.readouterr())
    assert _quoted(said) == [], said
    assert any(s.startswith("upload.dcm: cannot decode the DICOM pixel data (ValueError;") for s in said)
