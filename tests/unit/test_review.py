"""Issue 43: the 3D Slicer review loop: a scene that opens both scans and every point list in one step, the
consensus's points unlocked and described, the flagged ones selected; a corrected list reads back as landmarks."""

import json
import xml.etree.ElementTree as ET

import numpy as np

from testdata import write_preproc
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from landmarkflow.present import review


def _patient(tmp_path):
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = [-30.0, 12.0, -5.0]
    rng = np.random.default_rng(0)
    res = tmp_path / "results" / "P1"
    write_preproc(res / "preproc", affine, {(tp, mod): rng.random((20, 20, 20)) for tp in ("pre", "post") for mod in ("t1ce", "flair")})
    pts = np.array([[-20.0, 20.0, 5.0], [-10.0, 25.0, 10.0]])
    (res / "landmarks").mkdir(parents=True)
    pts = np.vstack([pts, [[-15.0, 22.0, 8.0]]])
    write_landmarks(landmarks_frame(["a", "b", "c"], pts, uncertainty_mm=[0.4, 3.2, np.nan], flag=[0, 1, 1],
                                    rule=["agreement", "disagreement", "unconfirmed"],
                                    methods=["ants_syn+svf", "ants_syn", "ants_syn"]),
                    res / "landmarks" / "consensus.csv")
    write_landmarks(landmarks_frame(["a", "b", "c"], pts + 1.0), res / "landmarks" / "ants_syn.csv")
    return res, pts


def test_the_scene_opens_both_scans_and_every_list_by_relative_paths(tmp_path):
    res, _ = _patient(tmp_path)
    out = res / "slicer"
    written = review.export_review([res / "landmarks" / "consensus.csv", res / "landmarks" / "ants_syn.csv"], out,
                                   preproc_dir=res / "preproc")
    assert out / review.SCENE in written
    root = ET.parse(out / review.SCENE).getroot()  # well-formed XML
    assert root.tag == "MRML"
    files = [e.get("fileName") for e in root if e.get("fileName")]
    assert all(not f.startswith("/") for f in files)  # the folder can move with ../preproc
    assert all((out / f).is_file() for f in files), files
    volumes = [e.get("name") for e in root.iter("Volume")]
    assert volumes == ["pre_t1ce", "post_t1ce", "pre_flair", "post_flair"]
    assert [e.get("name") for e in root.iter("MarkupsFiducial")] == ["consensus", "ants_syn"]
    for node in root.iter("MarkupsFiducial"):  # each list reaches its file through its storage node
        sid = node.get("references").removeprefix("storage:").rstrip(";")
        storage = next(e for e in root.iter("MarkupsJsonStorage") if e.get("id") == sid)
        assert storage.get("fileName") == f"{node.get('name')}.mrk.json"
    red = next(e for e in root.iter("SliceComposite") if e.get("layoutName") == "Red")
    assert red.get("backgroundVolumeID") == "vtkMRMLScalarVolumeNode1" and red.get("foregroundVolumeID") == "vtkMRMLScalarVolumeNode2"


def test_the_consensus_is_the_list_to_correct(tmp_path):
    res, pts = _patient(tmp_path)
    out = res / "slicer"
    review.export_review([res / "landmarks" / "consensus.csv", res / "landmarks" / "ants_syn.csv"], out)
    node = json.loads((out / "consensus.mrk.json").read_text())["markups"][0]
    assert node["locked"] is False and not any(cp["locked"] for cp in node["controlPoints"])
    a, b, c = node["controlPoints"]
    assert c["description"] == "uncertainty unknown (nothing confirms it); rule unconfirmed; flagged: check by eye"
    assert a["description"] == "uncertainty 0.4 mm; rule agreement; not flagged" and a["selected"] is False
    assert b["description"] == "uncertainty 3.2 mm; rule disagreement; flagged: check by eye" and b["selected"] is True
    assert node["display"]["selectedColor"] == list(review.FLAG_COLOUR) != node["display"]["color"]
    other = json.loads((out / "ants_syn.mrk.json").read_text())["markups"][0]
    assert other["locked"] is True and all(cp["locked"] and cp["selected"] for cp in other["controlPoints"])
    # the round trip: a reviewer moves point b in Slicer and saves; the file reads back as landmarks, b moved
    cp = node["controlPoints"][1]
    cp["position"] = [cp["position"][0] - 2.0, cp["position"][1], cp["position"][2]]  # LPS x - 2: RAS x + 2
    reviewed = tmp_path / "reviewed.mrk.json"
    reviewed.write_text(json.dumps({"@schema": "x", "markups": [node]}))
    back = read_landmarks(reviewed)
    assert back["landmark"].tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(points_of(back), pts + [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-4)
