"""Ultrasound DICOM as scanners export it: calibration in the Sequence of Ultrasound Regions, cine loops (several
frames) and PACS file names without an extension."""

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
