"""Shared test settings: ONNX graphs exported by the tests go to a temporary folder, not the user's cache."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _onnx_cache_in_a_temporary_folder(tmp_path_factory):
    import breastdx.inference.onnx_graphs as onnx_graphs

    folder = tmp_path_factory.mktemp("onnx-cache")
    original = onnx_graphs.onnx_cache_dir
    onnx_graphs.onnx_cache_dir = lambda: folder
    yield folder
    onnx_graphs.onnx_cache_dir = original


@pytest.fixture(scope="session")
def j2k_zero_box_dicom(tmp_path_factory):
    """A 626-byte DICOM whose JPEG 2000 pixel data is a JP2 signature box followed by a box of length 0: pydicom
    3.0's J2K parameter reader loops forever on it, holding the GIL. Written by the script of the upstream report
    (docs/upstream/pydicom-j2k-zero-length-box.md). Decode it only in a worker process with a time limit."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "upstream" / "make_j2k_zero_box.py"
    path = tmp_path_factory.mktemp("hostile") / "zero_box_j2k.dcm"
    subprocess.run([sys.executable, str(script), str(path)], check=True)
    return path


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Set what this CPU does with bfloat16: ``"amx"`` (native, AMX tiles), ``"avx512_bf16"`` (native, no AMX) or
    ``"none"`` (emulated); True and False stand for ``"amx"`` and ``"none"``."""
    flags = {"amx": {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "avx512_bf16": {"avx2", "avx512f", "avx512_bf16"},
             "none": {"avx2"}}

    def set_cpu(kind) -> None:
        kind = {True: "amx", False: "none"}.get(kind, kind)
        monkeypatch.setattr("breastdx.runtime.bf16_native_cpu", lambda: kind != "none")
        monkeypatch.setattr("breastdx.runtime.cpu_flags", lambda: frozenset(flags[kind]))
    return set_cpu


@pytest.fixture(scope="session")
def he_dicom():
    """A writer of an RGB whole-slide-microscopy DICOM tile: ``he_dicom(path, rgb, spacing_mm, shared)`` puts the
    pixel spacing in the file's PixelSpacing, or (``shared``) in its Shared Functional Groups' Pixel Measures, as
    whole-slide images keep it; returns the path. pydicom's ``set_pixel_data`` writes the Image Pixel module."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import VLWholeSlideMicroscopyImageStorage, generate_uid

    def write(path, rgb, spacing_mm, shared=False):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = VLWholeSlideMicroscopyImageStorage, generate_uid(), "SM"
        ds.set_pixel_data(rgb, photometric_interpretation="RGB", bits_stored=8)
        measures = Dataset() if shared else ds
        measures.PixelSpacing = list(spacing_mm)
        if shared:
            ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
            ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence = Sequence([measures])
        ds.save_as(path, enforce_file_format=True)
        return path

    return write


@pytest.fixture(scope="session")
def grey_dicom():
    """``write(path, arr, photometric="MONOCHROME2", spacing=(0.1, 0.2), window=None, bits_stored=12)``: a
    secondary-capture DICOM of a 2-D array (16 bits allocated), with PixelSpacing (mm: rows, columns; None: none)
    and a VOI window ``(centre, width)`` if given; written to ``path`` (returned), or, with ``path`` None, in memory
    (its bytes returned)."""
    import io

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    def write(path, arr, photometric="MONOCHROME2", spacing=(0.1, 0.2), window=None, bits_stored=12):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
        if spacing is not None:
            ds.PixelSpacing = list(spacing)
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = np.asarray(arr).astype(np.uint16).tobytes()
        if path is not None:
            ds.save_as(path, enforce_file_format=True)
            return path
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()

    return write
