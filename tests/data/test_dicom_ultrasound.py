"""Ultrasound DICOM as scanners export it: calibration in the Sequence of Ultrasound Regions, cine loops (several
frames) and PACS file names without an extension."""

from pathlib import Path

import numpy as np
import pytest

from breastdx.data.images import list_images, read_image, read_image_bytes


def _region(delta_cm: tuple[float, float], box: tuple[int, int, int, int], units: tuple[int, int] = (3, 3)):
    from pydicom.dataset import Dataset

    r = Dataset()
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX, r.PhysicalDeltaY = delta_cm
    r.RegionSpatialFormat, r.RegionDataType = 1, 1
    return r


def _us_dicom(path: Path, frames: np.ndarray, regions=(), pixel_spacing=None) -> Path:
    """An 8-bit MONOCHROME2 ultrasound DICOM of ``frames`` ``(H, W)`` or ``(F, H, W)``."""
    from pydicom.dataset import Dataset, FileMetaDataset
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
