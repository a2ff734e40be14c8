"""Evaluation metrics on hand-made predictions (values computed by hand in the comments)."""

import numpy as np
import pandas as pd
import pytest

from landmarkflow import metrics


def _pred(rows):
    return pd.DataFrame(rows, columns=["patient", "landmark", "method", "x", "y", "z", "spread_mm", "fallback"])


TRUTH = pd.DataFrame({"patient": ["P", "P"], "landmark": ["1", "2"], "x": [0.0, 10.0], "y": [0.0, 0.0], "z": [0.0, 0.0]})


def test_errors_and_summary():
    pred = _pred([
        ["P", "1", "identity", 4.0, 0, 0, np.nan, np.nan],  # initial 4
        ["P", "2", "identity", 10.0, 2, 0, np.nan, np.nan],  # initial 2
        ["P", "1", "agent_guided", 1.0, 0, 0, 0.5, 0],  # 1 -> normalised 0.25
        ["P", "2", "agent_guided", 10.0, 0, 3, 1.5, 0],  # 3 -> normalised 1.5, worse than initial
    ])
    err = metrics.errors(pred, TRUTH)
    g = err[err["method"] == "agent_guided"].set_index("landmark")
    assert g.loc["1", "error_mm"] == pytest.approx(1.0) and g.loc["2", "error_mm"] == pytest.approx(3.0)
    assert g.loc["1", "initial_mm"] == pytest.approx(4.0) and g.loc["2", "initial_mm"] == pytest.approx(2.0)
    s = metrics.summary(err).set_index("method")
    assert list(s.index) == ["identity", "agent_guided"]  # fixed method order
    assert s.loc["agent_guided", "mean_mm"] == pytest.approx(2.0)
    assert s.loc["agent_guided", "median_mm"] == pytest.approx(2.0)
    assert s.loc["agent_guided", "norm_mean"] == pytest.approx((0.25 + 1.5) / 2)
    assert s.loc["agent_guided", "robustness"] == pytest.approx(0.5)
    assert s.loc["agent_guided", "over_5mm"] == 0
    assert s.loc["agent_guided", "spread_mm"] == pytest.approx(1.0)
    assert s.loc["identity", "robustness"] == 0 and s.loc["identity", "norm_mean"] == pytest.approx(1.0)


def test_missing_method_for_some_patients_keeps_the_others():
    truth = pd.concat([TRUTH, TRUTH.assign(patient="Q")])
    pred = _pred([
        ["P", "1", "identity", 4.0, 0, 0, np.nan, np.nan],
        ["P", "2", "identity", 10.0, 2, 0, np.nan, np.nan],
        ["Q", "1", "identity", 1.0, 0, 0, np.nan, np.nan],
        ["Q", "2", "identity", 10.0, 1, 0, np.nan, np.nan],
        ["P", "1", "agent_guided", 0.0, 0, 0, 0.5, 0],  # Q has no guided agent (no resection mask)
    ])
    s = metrics.summary(metrics.errors(pred, truth)).set_index("method")
    assert s.loc["identity", "n"] == 4 and s.loc["agent_guided", "n"] == 1
    assert s.loc["agent_guided", "mean_mm"] == 0


def test_disagreement_without_truth():
    pred = _pred([["P", "1", "identity", 0, 0, 0, np.nan, np.nan], ["P", "1", "agent_baseline", 3, 4, 0, 1.0, 0]])
    d = metrics.disagreement(pred).set_index("method")
    assert d.loc["agent_baseline", "shift_from_identity_mm"] == pytest.approx(5.0)


def test_rigid_fit_of_two_landmarks_is_reported_not_fatal(small_cohort, tmp_path):
    import json

    from landmarkflow import io
    from landmarkflow.manifest import load_manifest

    manifest, _ = small_cohort  # two post-op landmarks
    m = load_manifest(manifest)
    res_dir = tmp_path / "results"
    (res_dir / "P1" / "preproc").mkdir(parents=True)
    (res_dir / "P1" / "preproc" / "preproc.json").write_text(json.dumps({"post_to_pre": np.eye(4).tolist()}))
    post = io.read_landmarks(m.path("P1", "post", "landmarks", "expert"))
    pred = _pred([["P1", r.landmark, "agent_guided", r.x + 1, r.y, r.z, 0.5, 0] for r in post.itertuples()])
    fits, residuals = metrics.rigid_fits(m, pred, metrics.ground_truth(m), res_dir)
    assert set(fits["method"]) == {"agent_guided", "truth"}
    assert fits["status"].str.contains("P1, agent_guided: a rigid fit needs at least 3 landmarks, got 2").any()
    assert residuals.empty
