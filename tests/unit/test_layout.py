"""The results layout and the preprocessed patient folder: one owner each."""

import json

import numpy as np
import pytest

from testdata import write_preproc
from landmarkflow.core import layout, methods
from landmarkflow.core.errors import InputError
from landmarkflow.cohort.preproc_folder import PreprocFolder


@pytest.mark.parametrize("prefix", ["", "study_a/", "/abs/run/"])
def test_parse_reads_back_every_path_the_layout_makes(prefix):
    cases = [(layout.landmarks("P1", "ants_syn"), {"kind": "landmarks", "patient": "P1", "method": "ants_syn"}),
             (layout.preproc("P1"), {"kind": "preproc", "patient": "P1"}),
             (layout.benchmark("train_agents", "P1"), {"kind": "benchmark", "rule": "train_agents", "job": "P1"}),
             (layout.trained("P1", "agent_guided"), {"kind": "trained", "patient": "P1", "folder": "agents"}),
             (f"{layout.agent_models('P1')}/{layout.training_name('L_2', layout.FINE)}",
              {"kind": "training", "patient": "P1", "method": "agent_fine", "landmark": "L_2"}),
             (layout.svf_dir("P1"), {"kind": "registration", "patient": "P1"}),
             (layout.jacobian_table(layout.svf_dir("P1")), {"kind": "jacobian", "patient": "P1"}),
             (layout.cohort("summary_by_cavity.tsv"), {"kind": "cohort", "name": "summary_by_cavity.tsv"}),
             (layout.log("redetect", "P1/seeded"), {"kind": "log", "rule": "redetect", "job": "P1/seeded"})]
    for method in methods.SEARCH:
        cases += [(layout.endpoints("P1", method), {"kind": "endpoints", "patient": "P1", "method": method}),
                  (layout.trajectories("P1", method), {"kind": "trajectories", "patient": "P1", "method": method}),
                  (layout.training_log("P1", method, "L_2"), {"kind": "training", "patient": "P1", "method": method, "landmark": "L_2"})]
    for path, expected in cases:
        assert layout.parse(prefix + path) == expected, path
    # a patient may be called "results" too: the last "results" folder is the root
    assert layout.parse("results/results/landmarks/pin.csv")["patient"] == "results"
    with pytest.raises(ValueError, match="not a file of the results layout"):
        layout.parse("results/P1/notes.txt")


def _folder(tmp_path):
    aff = np.diag([2.0, 1.0, 1.5, 1.0])
    aff[:3, 3] = [10, -5, 3]
    f = write_preproc(tmp_path / "preproc", aff, {("post", "t1ce"): np.ones((8, 8, 8)), ("pre", "flair"): np.ones((8, 8, 8))},
                      landmarks={("post", "expert"): (["a", "b"], [[14.0, -2.0, 6.0], [12.0, -4.0, 4.5]])},
                      warnings=["w"], timings_s={"total": 1})
    return f, aff


def test_preproc_folder_reads_what_preprocessing_wrote(tmp_path):
    f, aff = _folder(tmp_path)
    assert f.patient == "P1" and f.primary_annotator == "expert" and f.modalities == ["t1ce", "flair"]
    assert f.resolve_modalities([], "agent.modalities") == ["t1ce"]
    world, vox = f.target("a", aff)
    np.testing.assert_allclose(vox, [2.0, 3.0, 2.0])  # (14-10)/2, (-2+5)/1, (6-3)/1.5
    assert f.truth_path() is None and f.lesion("post") is None and not f.has_lesion()
    assert f.info_path.name == "preproc.json" and json.loads(f.info_path.read_text())["warnings"] == ["w"]


def test_preproc_folder_errors_name_the_patient_and_what_it_has(tmp_path):
    f, aff = _folder(tmp_path)
    with pytest.raises(InputError, match=r"pin.modalities \['t2'\] not among the modalities of patient P1: \['t1ce', 'flair'\]"):
        f.resolve_modalities(["t2"], "pin.modalities")
    with pytest.raises(InputError, match=r"landmark 'c' is not in the post-op landmarks of P1 \(a, b\)"):
        f.target("c", aff)
    with pytest.raises(InputError, match=r"preproc.json: not found; run the preprocessing first"):
        PreprocFolder(tmp_path / "elsewhere").patient
