"""Evaluation metrics on hand-made predictions (values computed by hand in the comments)."""

import numpy as np
import pandas as pd
import pytest

from landmarkflow.evaluate import metrics
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks


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


    from landmarkflow.cohort.manifest import load_manifest

    manifest, _ = small_cohort  # two post-op landmarks
    m = load_manifest(manifest)
    res_dir = tmp_path / "results"
    (res_dir / "P1" / "preproc").mkdir(parents=True)
    (res_dir / "P1" / "preproc" / "preproc.json").write_text(json.dumps({"patient": "P1", "post_to_pre": np.eye(4).tolist()}))
    post = read_landmarks(m.path("P1", "post", "landmarks", "expert"))
    pred = _pred([["P1", r.landmark, "agent_guided", r.x + 1, r.y, r.z, 0.5, 0] for r in post.itertuples()])
    fits, residuals = metrics.rigid_fits(m, pred, metrics.ground_truth(m), [res_dir / "P1" / "preproc"])
    assert set(fits["method"]) == {"agent_guided", "truth"}
    assert fits["status"].str.contains("P1, agent_guided: a rigid fit needs at least 3 landmarks, got 2").any()
    assert residuals.empty


def test_disagreement_is_the_distance_to_the_other_methods_median():
    pred = _pred([
        ["P", "1", "identity", 9, 9, 9, np.nan, np.nan],  # not among the others
        ["P", "1", "ants_syn", 0, 0, 0, np.nan, np.nan],
        ["P", "1", "agent_guided", 2, 0, 0, 1.0, 0],
        ["P", "1", "pin", 0, 6, 0, 1.0, 0],
        ["P", "1", "rater_expert2", 50, 0, 0, np.nan, np.nan],  # not among the others either
    ])
    d = metrics.disagreement(pred).set_index("method")["disagreement_mm"]
    assert d["ants_syn"] == pytest.approx(np.linalg.norm([1, 3, 0]))  # others: (2,0,0), (0,6,0) -> median (1,3,0)
    assert d["agent_guided"] == pytest.approx(np.linalg.norm([2, -3, 0]))  # others -> (0,3,0)
    assert d["pin"] == pytest.approx(np.linalg.norm([-1, 6, 0]))  # others -> (1,0,0)
    assert d["identity"] == pytest.approx(np.linalg.norm([9, 9, 9]))  # median of all three compared: (0,0,0)
    alone = metrics.disagreement(_pred([["P", "1", "identity", 0, 0, 0, np.nan, np.nan], ["P", "1", "pin", 1, 0, 0, 1, 0]]))
    assert np.isnan(alone.set_index("method").loc["pin", "disagreement_mm"])  # no other method to disagree with


def test_summary_without_ground_truth_keeps_every_method_and_the_jacobian():
    """Issue 20: empty errors with a non-empty Jacobian table crashed (KeyError 'method')."""
    pred = _pred([
        ["P", "1", "identity", 0, 0, 0, np.nan, np.nan],
        ["P", "1", "ants_syn", 3, 4, 0, np.nan, np.nan],
        ["P", "1", "agent_guided", 3, 4, 1, 2.0, 1],
    ])
    err = metrics.errors(pred, TRUTH.iloc[:0])
    assert err.empty and "error_mm" in err.columns
    jac = pd.DataFrame({"method": ["ants_syn"], "nonpositive_jacobian": [0.002]})
    s = metrics.summary(err, jac, pred).set_index("method")
    assert list(s.index) == ["identity", "ants_syn", "agent_guided"]
    assert (s["n"] == 0).all() and s["mean_mm"].isna().all()
    assert s.loc["ants_syn", "nonpositive_jacobian"] == pytest.approx(0.002)
    assert s.loc["agent_guided", "median_shift_mm"] == pytest.approx(np.sqrt(26))
    assert s.loc["agent_guided", "median_disagreement_mm"] == pytest.approx(1.0)
    assert s.loc["agent_guided", "spread_mm"] == 2.0 and s.loc["agent_guided", "fallbacks"] == 1
    empty = metrics.summary(err, None, pred.iloc[:0])  # nothing at all: the columns, no rows
    assert empty.empty and {"method", "n", "mean_mm", "median_disagreement_mm"} <= set(empty.columns)


def test_landmarks_to_check_puts_warning_signs_and_disagreement_first():
    pred = _pred([
        ["P", "1", "ants_syn", 0, 0, 0, np.nan, np.nan],
        ["P", "1", "agent_guided", 1, 0, 0, 1.0, 0],
        ["P", "2", "ants_syn", 0, 0, 0, np.nan, np.nan],
        ["P", "2", "agent_guided", 3, 0, 0, 1.0, 0],  # more disagreement than landmark 1
        ["P", "3", "ants_syn", 0, 0, 0, np.nan, np.nan],
        ["P", "3", "agent_guided", 0.5, 0, 0, 1.0, 1],  # a fallback: a warning sign
    ])
    residuals = pd.DataFrame({"patient": ["P", "P"], "method": ["ants_syn", "truth"], "landmark": ["1", "2"],
                              "residual_mm": [5.0, 6.0], "flagged": [1, 1], "spread_mm": [np.nan, np.nan]})
    c = metrics.landmarks_to_check(pred, residuals, flag_mm=4.0)
    assert c["landmark"].tolist() == ["1", "3", "2"]  # 1: off the rigid fit (disagreement 1) before 3: fallback (0.5)
    row = c.set_index("landmark")
    assert row.loc["1", "off_rigid_fit"] == "ants_syn" and row.loc["2", "off_rigid_fit"] == ""  # truth is no method
    assert row.loc["3", "fallbacks"] == "agent_guided" and row.loc["2", "warning_signs"] == 0
    assert row.loc["2", "median_disagreement_mm"] == pytest.approx(3.0)


def _results(tmp_path, m, shift=1.0):
    """Landmark files of identity and two methods for every patient of ``m`` (the post-op landmarks moved);
    returns their paths."""


    res = tmp_path / "results"
    files = []
    for patient in m.patients:
        post = read_landmarks(m.path(patient, "post", "landmarks", "expert"))
        xyz = points_of(post)
        (res / patient / "landmarks").mkdir(parents=True)
        write_landmarks(landmarks_frame(post["landmark"], xyz), res / patient / "landmarks" / "identity.csv")
        write_landmarks(landmarks_frame(post["landmark"], xyz + shift), res / patient / "landmarks" / "ants_syn.csv")
        write_landmarks(landmarks_frame(post["landmark"], xyz - shift), res / patient / "landmarks" / "agent_baseline.csv")
        files += [res / patient / "landmarks" / f"{method}.csv" for method in ("identity", "ants_syn", "agent_baseline")]
    return files


def _inputs(out, files):
    from landmarkflow.present.report import ReportInputs

    return ReportInputs(summary=out["summary"], errors=out["errors"], predictions=out["predictions"], files=files,
                        check=out["check"])


def _outputs(tmp_path):
    names = ("errors", "summary", "predictions", "rigid", "residuals", "check")
    return {n: tmp_path / "cohort" / f"{n}.tsv" for n in names}


def test_evaluate_cohort_without_ground_truth_writes_every_table(small_cohort, tmp_path):
    from landmarkflow.cohort.manifest import load_manifest

    manifest, _ = small_cohort
    manifest.write_text("".join(line for line in manifest.read_text().splitlines(True) if "pre_lm.csv" not in line))
    m = load_manifest(manifest)
    files = _results(tmp_path, m)
    jac = tmp_path / "jacobian.tsv"
    pd.DataFrame({"method": ["ants_syn"], "nonpositive_jacobian": [0.01]}).to_csv(jac, sep="\t", index=False)
    out = _outputs(tmp_path)
    metrics.evaluate_cohort(m, files, out["errors"], out["summary"], out["predictions"], (), [jac], out["rigid"],
                            out["residuals"], out_check=out["check"])
    assert pd.read_csv(out["errors"], sep="\t").empty
    s = pd.read_csv(out["summary"], sep="\t").set_index("method")
    assert list(s.index) == ["identity", "ants_syn", "agent_baseline"] and (s["n"] == 0).all()
    assert s.loc["ants_syn", "median_shift_mm"] == pytest.approx(np.sqrt(3), abs=1e-3)
    assert s.loc["ants_syn", "median_disagreement_mm"] == pytest.approx(2 * np.sqrt(3), abs=1e-3)
    assert s.loc["ants_syn", "nonpositive_jacobian"] == pytest.approx(0.01)
    assert len(pd.read_csv(out["check"], sep="\t")) == 2  # both landmarks of P1


def test_errors_by_distance_to_the_cavity(tmp_path):
    from testdata import write_preproc

    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-10.0, 0.0, 5.0]
    cavity = np.zeros((30, 30, 30), bool)
    cavity[8:12, 10:20, 10:20] = True  # voxel centres x from 6 to 12 mm in world, y 10-19, z 15-24
    world = [[14.0, 15.0, 20.0], [24.0, 15.0, 20.0], [44.0, 15.0, 20.0]]  # 2, 12 and 32 mm beyond the cavity in x
    folder = write_preproc(tmp_path / "P1" / "preproc", affine, {("post", "t1"): np.ones(cavity.shape)},
                           lesions={"post": cavity}, landmarks={("post", "expert"): (["a", "b", "c"], world)})
    d = metrics.cavity_distances([folder.path]).set_index("landmark")
    np.testing.assert_allclose(d["cavity_mm"], [2.0, 12.0, 32.0], atol=0.01)  # to the centre of the last cavity voxel (x = 12)
    assert d["band"].tolist() == ["< 6 mm", "6-15 mm", ">= 15 mm"]
    err = pd.DataFrame({"patient": "P1", "landmark": ["a", "b", "c", "a"], "method": ["ants_syn"] * 3 + ["consensus"],
                        "error_mm": [3.0, 1.0, 0.5, 2.0]}).merge(d.reset_index(), on=["patient", "landmark"])
    bands = metrics.by_cavity_band(err)
    assert bands[["method", "band"]].values.tolist() == [["consensus", "< 6 mm"], ["ants_syn", "< 6 mm"],
                                                         ["ants_syn", "6-15 mm"], ["ants_syn", ">= 15 mm"]]
    assert bands["mean_mm"].tolist() == [2.0, 3.0, 1.0, 0.5] and bands["n"].tolist() == [1, 1, 1, 1]
    assert metrics.cavity_band(float("nan")) == "no cavity mask"


def test_benchmark_files_are_read_and_summarised_per_rule(tmp_path):
    """Snakemake's benchmark files (one per job) -> one row per job, then per rule: jobs, mean/min/max seconds,
    peak memory, mean CPU seconds; what the report and benchmarks/stage_times.py show."""
    from landmarkflow.evaluate.benchmarks import read_benchmarks, summarise_benchmarks

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = []
    for rule, job, s, rss, cpu in (("register_svf", "P1", 40.0, 800.0, 30.0), ("register_svf", "P2", 60.0, 900.0, 50.0),
                                   ("train_agents", "P1", 300.0, 1500.0, 450.0)):
        f = tmp_path / "benchmarks" / rule / f"{job}.tsv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(header + f"{s}\t0:00:{int(s)}\t{rss}\t1\t1\t1\t0\t0\t90\t{cpu}\n")
        files.append(f)
    jobs = read_benchmarks(files)
    assert jobs[["rule", "job"]].values.tolist() == [["register_svf", "P1"], ["register_svf", "P2"], ["train_agents", "P1"]]
    table = summarise_benchmarks(jobs).set_index("rule")
    svf = table.loc["register_svf"]
    assert (svf["jobs"], svf["mean_s"], svf["min_s"], svf["max_s"], svf["max_rss_mb"], svf["mean_cpu_s"]) == (2, 50.0, 40.0, 60.0, 900.0, 40.0)
    assert table.loc["train_agents", "jobs"] == 1


def test_predictions_show_the_users_labels_for_every_method(small_cohort, tmp_path):
    """Issue 30: a label such as "Point 1" (identified as Point_1) appears beside every method's prediction."""
    from landmarkflow.cohort.manifest import load_manifest

    manifest, _ = small_cohort
    m = load_manifest(manifest)
    files = _results(tmp_path, m)
    ident = read_landmarks(files[0])
    ident["label"] = ["left pole", "ACA, right"]
    write_landmarks(ident, files[0])
    pred = metrics.collect_predictions(m, files)
    assert list(pred.columns[:3]) == ["patient", "landmark", "label"]
    by = pred.set_index(["method", "landmark"])["label"]
    assert by[("ants_syn", "1")] == "left pole" and by[("agent_baseline", "2")] == "ACA, right"
    assert "label" not in metrics.collect_predictions(m, files[1:]).columns  # no labels given: no column
