"""3D Slicer markups in and out: .mrk.json (LPS or RAS) and .fcsv, converted in one place, labels as identifiers."""

import json

import numpy as np
import pytest

from testdata import oblique_affine
from landmarkflow.imaging import spatial
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from landmarkflow.io.markups import write_markups
from landmarkflow.core.errors import InputError

VOXELS = np.array([[3.0, 4.0, 5.0], [10.5, 2.0, 7.25], [0.0, 11.0, 1.0]])
LABELS = ["ACL", "pole-2", "7"]


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_csv_to_markups_to_csv_round_trip(tmp_path, system):
    ras = spatial.voxel_to_world(VOXELS, oblique_affine())
    write_landmarks(landmarks_frame(LABELS, ras), tmp_path / "in.csv")
    write_markups(read_landmarks(tmp_path / "in.csv"), tmp_path / "lm.mrk.json", coordinate_system=system)
    doc = json.loads((tmp_path / "lm.mrk.json").read_text())
    assert doc["markups"][0]["coordinateSystem"] == system and doc["markups"][0]["type"] == "Fiducial"
    written = np.array([cp["position"] for cp in doc["markups"][0]["controlPoints"]])
    source = points_of(read_landmarks(tmp_path / "in.csv"))  # the CSV's 4 decimals
    np.testing.assert_allclose(written, source * ([-1, -1, 1] if system == "LPS" else 1), atol=1e-9)
    write_landmarks(read_landmarks(tmp_path / "lm.mrk.json"), tmp_path / "out.csv")
    back = read_landmarks(tmp_path / "out.csv")
    assert back["landmark"].tolist() == LABELS
    np.testing.assert_allclose(points_of(back), ras, atol=1e-4)


def _slicer_json(lps) -> str:
    """A point list as Slicer 5.6 saves it (fields of markups-schema-v1.0.3), positions in LPS."""
    cps = ",\n".join(
        f'''{{"id": "{k}", "label": "{lab}", "description": "", "associatedNodeID": "vtkMRMLScalarVolumeNode1",
            "position": [{p[0]!r}, {p[1]!r}, {p[2]!r}], "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "selected": true, "locked": false, "visibility": true, "positionStatus": "defined"}}'''
        for k, (lab, p) in enumerate(zip(LABELS, np.asarray(lps).tolist()), start=1))
    return f'''{{"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
"markups": [{{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": false,
  "fixedNumberOfControlPoints": false, "labelFormat": "%N-%d", "lastUsedControlPointNumber": 3,
  "controlPoints": [{cps},
    {{"id": "4", "label": "F-4", "position": [0.0, 0.0, 0.0], "positionStatus": "undefined"}}],
  "measurements": [], "display": {{"visibility": true, "opacity": 1.0, "color": [0.4, 1.0, 1.0]}}}}]}}'''


def _fcsv(points, system_line) -> str:
    head = ["# Markups fiducial file version = 4.11"] + ([system_line] if system_line else [])
    head.append("# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID")
    rows = [f"vtkMRMLMarkupsFiducialNode_{k},{p[0]!r},{p[1]!r},{p[2]!r},0,0,0,1,1,1,0,{lab},,vtkMRMLScalarVolumeNode1"
            for k, (lab, p) in enumerate(zip(LABELS, np.asarray(points).tolist()))]
    return "\n".join(head + rows) + "\n"


@pytest.mark.parametrize("kind", ["json_lps", "fcsv_lps", "fcsv_ras_code_0", "fcsv_legacy_ras"])
def test_slicer_files_give_the_right_ras_points_on_an_oblique_image(tmp_path, kind):
    aff = oblique_affine()  # rotated, x flipped, anisotropic spacing, an origin
    ras = spatial.voxel_to_world(VOXELS, aff)
    lps = spatial.ras_to_lps(ras)
    name, text = {
        "json_lps": ("lm.mrk.json", _slicer_json(lps)),
        "fcsv_lps": ("lm.fcsv", _fcsv(lps, "# CoordinateSystem = LPS")),
        "fcsv_ras_code_0": ("lm.fcsv", _fcsv(ras, "# CoordinateSystem = 0")),  # Slicer 4.10: 0 = RAS
        "fcsv_legacy_ras": ("lm.fcsv", _fcsv(ras, None)),  # no line: RAS
    }[kind]
    (tmp_path / name).write_text(text)
    lm = read_landmarks(tmp_path / name, image_shape=(20, 18, 10), image_affine=aff)
    assert lm["landmark"].tolist() == LABELS  # the undefined 4th point of the JSON file is not a landmark
    np.testing.assert_allclose(spatial.world_to_voxel(points_of(lm), aff), VOXELS, atol=1e-6)


def test_markups_problems_name_the_file_and_what_was_expected(tmp_path):
    (tmp_path / "line.mrk.json").write_text(json.dumps({"markups": [{"type": "Line", "controlPoints": []}]}))
    with pytest.raises(InputError, match=r"line.mrk.json: no point list in the file \(markups types: Line\)"):
        read_landmarks(tmp_path / "line.mrk.json")
    (tmp_path / "bad.fcsv").write_text(_fcsv(np.zeros((3, 3)), "# CoordinateSystem = LPS").replace(",0.0,0.0,0.0,0,0,0,1", ",x,0.0,0.0,0,0,0,1", 1))
    with pytest.raises(InputError, match=r"bad.fcsv: line 4: x, y, z = 'x', '0.0', '0.0' are not numbers"):
        read_landmarks(tmp_path / "bad.fcsv")
    (tmp_path / "dup.fcsv").write_text(_fcsv(np.zeros((3, 3)), "# CoordinateSystem = RAS").replace("pole-2", "ACL"))
    with pytest.raises(InputError, match=r"dup.fcsv: landmark 'ACL' appears more than once"):
        read_landmarks(tmp_path / "dup.fcsv")


def test_a_manifest_may_name_slicer_files(small_cohort):
    from landmarkflow.cohort import manifest, validation

    m_path, folder = small_cohort
    for name in ("post_lm", "pre_lm"):
        lm = read_landmarks(folder / "p1" / f"{name}.csv")
        write_markups(lm, folder / "p1" / f"{name}.mrk.json")
        m_path.write_text(m_path.read_text().replace(f"p1/{name}.csv", f"p1/{name}.mrk.json"))
    m = validation.validate_contents(manifest.load_manifest(m_path))
    post = read_landmarks(m.path("P1", "post", "landmarks", "expert"))
    np.testing.assert_allclose(points_of(post), points_of(read_landmarks(folder / "p1" / "post_lm.csv")), atol=1e-9)


def test_review_export_writes_one_point_list_per_method(tmp_path):
    from landmarkflow.present.review import export_review

    files = []
    for method, shift in (("identity", 0.0), ("ants_syn", 1.0), ("agent_guided", 2.0)):
        path = tmp_path / "results" / "P1" / "landmarks" / f"{method}.csv"
        write_landmarks(landmarks_frame(["1", "2"], np.array([[0.0, 0, 0], [5, 5, 5]]) + shift), path)
        files.append(path)
    out = tmp_path / "results" / "P1" / "slicer"
    export_review(files, out, truth_file=files[0])
    assert sorted(p.name for p in out.iterdir()) == ["agent_guided.mrk.json", "ants_syn.mrk.json", "identity.mrk.json", "truth.mrk.json"]
    back = read_landmarks(out / "ants_syn.mrk.json")
    np.testing.assert_allclose(points_of(back), [[1.0, 1, 1], [6, 6, 6]], atol=1e-9)
    doc = json.loads((out / "agent_guided.mrk.json").read_text())
    assert doc["markups"][0]["display"]["color"] == pytest.approx([0xd6 / 255, 0x27 / 255, 0x28 / 255])
    assert doc["markups"][0]["controlPoints"][0]["description"] == "agent_guided"
    truth = read_landmarks(out / "truth.mrk.json")
    assert truth["landmark"].tolist() == ["1", "2"]
    np.testing.assert_allclose(points_of(truth), [[0.0, 0, 0], [5, 5, 5]], atol=1e-9)
    export_review(files[:1], out)  # a second export replaces the folder whole
    assert sorted(p.name for p in out.iterdir()) == ["identity.mrk.json"]
    assert not list(tmp_path.rglob("*.part*")) and not list(tmp_path.rglob("*.old*"))


def test_an_fcsv_label_with_a_comma_is_read_as_slicer_quotes_it(tmp_path):
    """Issue 30: line.split(",") cut the quoted label '"1, left"' and blamed the label."""
    ras = spatial.voxel_to_world(VOXELS, oblique_affine())
    text = _fcsv(ras, "# CoordinateSystem = RAS").replace(",ACL,", ',"ACL, left",').replace(",7,,", ',7,"a, b",')
    (tmp_path / "q.fcsv").write_text(text)
    lm = read_landmarks(tmp_path / "q.fcsv")
    assert lm["label"].tolist() == ["ACL, left", "pole-2", "7"] and lm["landmark"].tolist() == ["ACL_left", "pole-2", "7"]
    np.testing.assert_allclose(points_of(lm), ras, atol=1e-9)
    (tmp_path / "bad.fcsv").write_text(text.replace('"ACL, left"', "ACL, left"))  # unquoted: one field too many
    with pytest.raises(InputError, match=r"bad.fcsv: line 4: 15 fields, more than the 14 columns .*an unquoted comma"):
        read_landmarks(tmp_path / "bad.fcsv")


@pytest.mark.parametrize("system", ["RAS", "LPS"])
def test_slicer_control_point_table_csv_is_read_in_its_coordinate_system(tmp_path, system):
    """Issue 30: the Markups module's control-point table, saved as CSV (label,r,a,s or label,l,p,s, then
    Slicer's other columns), on an oblique image."""
    aff = oblique_affine()
    ras = spatial.voxel_to_world(VOXELS, aff)
    xyz = ras if system == "RAS" else spatial.ras_to_lps(ras)
    head = "label,r,a,s" if system == "RAS" else "label,l,p,s"
    rows = [f'"{lab}",{p[0]!r},{p[1]!r},{p[2]!r},true,false,true,false,""' for lab, p in zip(["F 1", "F-2", "F3"], np.asarray(xyz).tolist())]
    (tmp_path / "table.csv").write_text(head + ",defined,selected,visible,locked,description\n" + "\n".join(rows) + "\n")
    lm = read_landmarks(tmp_path / "table.csv", image_shape=(20, 18, 10), image_affine=aff)
    assert lm["landmark"].tolist() == ["F_1", "F-2", "F3"] and lm["label"].tolist() == ["F 1", "F-2", "F3"]
    np.testing.assert_allclose(spatial.world_to_voxel(points_of(lm), aff), VOXELS, atol=1e-9)
    (tmp_path / "bad.csv").write_text(head + "\nF1,1.0,x,2.0\n")
    with pytest.raises(InputError, match=r"bad.csv: line 2: .* = '1.0', 'x', '2.0' are not numbers"):
        read_landmarks(tmp_path / "bad.csv")
