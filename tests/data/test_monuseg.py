"""The MoNuSeg breast reader: XML polygons to instance masks (synthetic), and the real shared tiles."""

import numpy as np
import pytest

from breastdx.data.errors import DataError
from breastdx.data.monuseg import (case_microns_per_pixel, find_monuseg_root, load_case, monuseg_checksum,
                                   polygons_to_instances, read_polygons, relabel, scan_monuseg, split_mask)

XML = """<Annotations MicronsPerPixel="0.250000"><Annotation Id="1"><Regions>
<Region Id="1"><Vertices><Vertex X="1" Y="1"/><Vertex X="5" Y="1"/><Vertex X="5" Y="4"/><Vertex X="1" Y="4"/>
</Vertices></Region>
<Region Id="2"><Vertices><Vertex X="4" Y="2"/><Vertex X="8" Y="2"/><Vertex X="8" Y="6"/><Vertex X="4" Y="6"/>
</Vertices></Region>
<Region Id="3"><Vertices><Vertex X="0" Y="0"/><Vertex X="1" Y="1"/></Vertices></Region>
</Regions></Annotation></Annotations>"""


def test_polygons_to_instances(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(XML)
    polygons, mpp = read_polygons(path)
    assert mpp == 0.25 and len(polygons) == 2  # a region of two vertices is not a polygon
    labels = polygons_to_instances(polygons, (7, 11))
    assert labels.dtype == np.int32 and labels.shape == (7, 11)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[2, 2] == 1 and labels[3, 4] == 2  # the later polygon wins where they overlap
    assert (labels == 2).sum() == 25  # rows 2-6, columns 4-8
    (tmp_path / "b.xml").write_text("<not xml")
    with pytest.raises(DataError, match="b.xml: not a readable XML annotation"):
        read_polygons(tmp_path / "b.xml")


def test_malformed_vertices_and_resolution_name_the_file(tmp_path):
    """A vertex without a numeric X or Y, or a MicronsPerPixel that is no number, raised a bare TypeError or
    ValueError that named neither the file nor the region."""
    bad_vertex = XML.replace('<Vertex X="5" Y="4"/>', '<Vertex X="5"/>', 1)
    bad_mpp = XML.replace('MicronsPerPixel="0.250000"', 'MicronsPerPixel="n/a"')
    for name, text, said in (("v.xml", bad_vertex, "Region 1: a Vertex without numeric X and Y"),
                             ("m.xml", bad_mpp, "MicronsPerPixel 'n/a' is not a number")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(DataError, match=f"{name}: {said}"):
            read_polygons(tmp_path / name)


def test_split_mask_separates_touching_nuclei():
    yy, xx = np.mgrid[:41, :67]
    mask = (np.hypot(yy - 20, xx - 20) <= 11) | (np.hypot(yy - 20, xx - 40) <= 11) | (np.hypot(yy - 5, xx - 60) <= 3)
    labels = split_mask(mask)
    assert labels.max() == 3 and ((labels > 0) == mask).all()
    assert labels[20, 20] != labels[20, 40]


def test_relabel():
    np.testing.assert_array_equal(relabel(np.array([[0, 7, 7], [3, 0, 9]])), [[0, 2, 2], [1, 0, 3]])
    np.testing.assert_array_equal(relabel(np.array([[5, 5]])), [[1, 1]])


def test_real_tiles(monuseg_root):
    cases = scan_monuseg(find_monuseg_root(monuseg_root.parent))
    assert [c.part for c in cases] == ["train"] * 6 + ["test"] * 2
    with_xml = {c.name[:12]: c for c in cases if c.annotation is not None}
    assert sorted(with_xml) == ["TCGA-A7-A13E", "TCGA-AC-A2FO", "TCGA-AO-A0J2", "TCGA-AR-A1AK", "TCGA-AR-A1AS",
                                "TCGA-E2-A1B5"]
    # PROVENANCE.md: 314, 433, 405, 328, 521 and 356 polygons
    counts = {k: len(read_polygons(c.annotation)[0]) for k, c in with_xml.items()}
    assert counts == {"TCGA-A7-A13E": 314, "TCGA-AR-A1AK": 433, "TCGA-AR-A1AS": 405, "TCGA-E2-A1B5": 328,
                      "TCGA-AC-A2FO": 521, "TCGA-AO-A0J2": 356}
    image, labels = load_case(with_xml["TCGA-AC-A2FO"])
    assert image.shape == (1000, 1000, 3) and image.dtype == np.uint8
    assert labels.shape == (1000, 1000) and 500 <= labels.max() <= 521  # a few polygons hidden by later ones
    no_xml = next(c for c in cases if c.annotation is None)
    _, labels = load_case(no_xml)
    assert labels.max() > 250  # split from the binary mask
    assert len(monuseg_checksum(cases)) == 64
    # the resolution each XML states (µm per pixel), the given one for a tile with a mask instead
    mpp = {k: case_microns_per_pixel(c, 0.25) for k, c in with_xml.items()}
    assert mpp == {"TCGA-A7-A13E": 0.2456, "TCGA-AR-A1AK": 0.2468, "TCGA-AR-A1AS": 0.2468, "TCGA-E2-A1B5": 0.2468,
                   "TCGA-AC-A2FO": 0.248, "TCGA-AO-A0J2": 0.2485}
    assert case_microns_per_pixel(no_xml, 0.25) == 0.25


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no MoNuSeg breast folder"):
        find_monuseg_root(tmp_path)
