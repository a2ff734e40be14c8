"""The Snakemake workflow: lint, dry run of the default config, a real run on a tiny cohort (every test here
starts Snakemake)."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from workflow_helpers import ROOT, TINY, copy_run, run, workdir as _workdir
from landmarkflow.core import layout
from landmarkflow.demo import synthetic
from landmarkflow.core.files import write_table
from landmarkflow.imaging.image import read_image
from landmarkflow.io.landmarks import points_of, read_landmarks

pytestmark = pytest.mark.e2e


def test_lint_is_clean():
    res = run(["--lint"], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Congratulations" in res.stdout + res.stderr


def test_every_output_log_and_benchmark_is_in_the_results_layout(tmp_path):
    """The rules take their paths from landmarkflow.core.layout: every file a dry run of every stage lists parses."""
    wd = _workdir(tmp_path, ["lay01"], overrides=TINY)
    res = run(["-n", "--forceall", "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml")])
    out = res.stdout + res.stderr
    paths = [p.strip() for line in re.findall(r"^\s+(?:output|log|benchmark): (.+)$", out, re.M) for p in line.split(",")]
    rules = set(re.findall(r"^(?:rule|checkpoint|localrule|localcheckpoint) (\w+):", out, re.M))
    assert {"train_agents", "train_pin", "register_ants", "consensus", "build_report", "export_markups"} <= rules, rules
    results = [p for p in paths if not p.startswith("resources/demo/")]
    assert len(results) > 40
    kinds = {layout.parse(p)["kind"] for p in results}  # raises for a path outside the layout
    assert {"landmarks", "trained", "endpoints", "log", "benchmark", "cohort", "preproc", "slicer"} <= kinds


def test_dry_run_schedules_every_rule():
    res = run(["-n", "--forceall", "--quiet", "rules"])
    out = res.stdout + res.stderr
    for rule in ("make_demo_patient", "validate_cohort", "preprocess_patient", "register_ants", "all"):
        assert rule in out, out


@pytest.mark.slow
def test_real_run_produces_every_output(tiny_run):
    wd = tiny_run
    table = pd.read_csv(wd / "results" / "cohort" / "manifest.tsv", sep="\t")
    assert set(table["patient"]) == {"tiny01"} and len(table) == len(synthetic.DEMO_SPEC)
    assert (wd / "results" / "benchmarks" / "make_demo_patient" / "tiny01.tsv").exists()
    lm_dir = wd / "results" / "tiny01" / "landmarks"
    methods = ["agent_baseline", "agent_guided", "agent_seeded", "ants_affine", "ants_rigid", "ants_syn", "ants_syn_nomask",
               "consensus", "identity", "pin", "svf"]
    assert sorted(p.stem for p in lm_dir.glob("*.csv")) == methods
    pre = read_image(wd / "resources" / "demo" / "tiny01" / "pre_t1ce.nii.gz")
    for p in lm_dir.glob("*.csv"):
        lm = read_landmarks(p, image_shape=pre.shape, image_affine=pre.affine)  # original pre-op world
        assert lm["landmark"].tolist() == ["1", "2", "3"]
    agents = read_landmarks(lm_dir / "agent_guided.csv")
    assert {"spread_mm", "fallback"} <= set(agents.columns)
    ends = pd.read_csv(wd / "results" / "tiny01" / "agents" / "guided_endpoints.tsv", sep="\t")
    assert (ends["stage"] == "coarse").sum() == 3 * TINY["agent"]["n_starts"]
    refined = agents["fallback"].astype(int) == 0  # the fine stage refines what did not fall back
    assert (ends["stage"] == "fine").sum() == refined.sum() * TINY["agent"]["fine_starts"]
    assert {"refined", "fine_shift_mm"} <= set(agents.columns)
    seeded = pd.read_csv(wd / "results" / "tiny01" / "agents" / "seeded_endpoints.tsv", sep="\t", dtype={"landmark": str})
    ants = read_landmarks(lm_dir / "ants_syn.csv").set_index("landmark")
    first = seeded[seeded["start"] == 0].set_index("landmark")[["start_x", "start_y", "start_z"]]
    assert np.abs(first.to_numpy() - ants.loc[first.index, ["x", "y", "z"]].to_numpy()).max() < 1.0  # started at ANTs'
    consensus = read_landmarks(lm_dir / "consensus.csv")
    assert {"uncertainty_mm", "flag", "rule", "methods"} <= set(consensus.columns)
    assert set(consensus["flag"]) <= {"0", "1"} and consensus["methods"].str.startswith("ants_syn+svf").all()
    svf_lm = read_landmarks(lm_dir / "svf.csv")
    assert "consistency_mm" in svf_lm.columns
    assert (wd / "results" / "tiny01" / "svf" / "consistency_mm.nii.gz").exists()
    pin_ends = pd.read_csv(wd / "results" / "tiny01" / "pin" / "endpoints.tsv", sep="\t")
    assert len(pin_ends) == 3 * TINY["pin"]["n_starts"] and (pin_ends["steps"] == TINY["pin"]["iterations"]).all()
    # landmark-based rigid fit: identity is the image-based rigid registration itself, so it fits exactly
    fits = pd.read_csv(wd / "results" / "cohort" / "rigid_fit.tsv", sep="\t").set_index("method")
    assert set(fits.index) == set(methods) | {"rater_expert2", "truth"} and (fits["status"] == "ok").all()
    # (up to the 1e-4 mm of the CSV files: a few hundredths of a degree for landmarks 2-4 cm apart)
    assert fits.loc["identity", "rms_mm"] < 1e-3 and fits.loc["identity", "shift_vs_image_mm"] < 1e-3
    assert fits.loc["identity", "rotation_vs_image_deg"] < 0.1
    assert fits.loc["truth", "rms_mm"] > 0.05  # the true motion near the cavity is not rigid
    residuals = pd.read_csv(wd / "results" / "cohort" / "rigid_residuals.tsv", sep="\t")
    assert len(residuals) == 3 * len(fits)
    summary = pd.read_csv(wd / "results" / "cohort" / "summary.tsv", sep="\t")
    assert set(summary["method"]) == set(methods) | {"rater_expert2"} and summary["method"].iloc[0] == "consensus"
    flags = summary.set_index("method").loc["consensus", ["flagged", "flag_catch", "flag_false_alarm"]]
    assert flags["flagged"] == int(consensus["flag"].astype(int).sum())
    jac = summary.set_index("method")["nonpositive_jacobian"]
    assert 0 <= jac["ants_syn"] < 0.01 and 0 <= jac["svf"] < 0.001  # the warps barely fold, and the share is reported
    errors = pd.read_csv(wd / "results" / "cohort" / "errors.tsv", sep="\t")
    truth = synthetic.Truth.load(wd / "resources" / "demo" / "tiny01" / "truth.json")
    q = points_of(read_landmarks(wd / "resources" / "demo" / "tiny01" / "post_landmarks_expert.csv"))
    expected_initial = np.linalg.norm(truth.post_to_pre(q) - truth.rigid_post_to_pre(q), axis=1)
    ident = errors[errors["method"] == "identity"].sort_values("landmark")["error_mm"].to_numpy()
    np.testing.assert_allclose(ident, expected_initial, atol=1.0)  # rigid alignment within 1 mm of the ideal one
    assert (wd / "results" / "cohort" / "report.html").stat().st_size > 50_000
    # the differential radiomics at the consensus, each change checked against the landmark's uncertainty (issue 43)
    changes = pd.read_csv(wd / "results" / "cohort" / "radiomics_changes.tsv", sep="\t", dtype={"landmark": str})
    assert sorted(changes["landmark"].unique()) == ["1", "2", "3"] and changes["z"].notna().any()
    unsure = pd.to_numeric(consensus.set_index("landmark")["uncertainty_mm"], errors="coerce") > 0  # (empty: unknown)
    for lm, g in changes.groupby("landmark"):  # (a probe region too small for its features gives NaN, as any region)
        assert g["pre_spread"].notna().any() if unsure[lm] else g["pre_spread"].isna().all(), lm
    assert "differential radiomics: landmarks against feature classes" in (wd / "results" / "cohort" / "report.html").read_text()
    # every method's landmarks (and the ground truth) as 3D Slicer point lists, the same points
    slicer = wd / "results" / "tiny01" / "slicer"
    assert sorted(p.name for p in slicer.glob("*.mrk.json")) == sorted(f"{m}.mrk.json" for m in methods + ["truth"])
    np.testing.assert_allclose(points_of(read_landmarks(slicer / "ants_syn.mrk.json")),
                               points_of(read_landmarks(lm_dir / "ants_syn.csv")), atol=1e-4)
    import xml.etree.ElementTree as ET

    scene = ET.parse(slicer / "scene.mrml").getroot()  # both scans and every list in one scene (issue 43)
    names = [e.get("fileName") for e in scene if e.get("fileName")]
    assert len(names) == 4 + len(methods) + 1 and all((slicer / n).is_file() for n in names), names
    assert not list(wd.rglob("*.part*"))  # nothing left half-written
    # the run sees a GPU variable (as a GPU job would): PyTorch jobs record their device; without CUDA they warn
    import torch

    for folder in ("agents/trained", "pin/trained", "svf"):
        record = pd.read_json(wd / "results" / "tiny01" / folder / layout.DEVICE, typ="series")
        assert record["visible_gpus"].startswith("CUDA_VISIBLE_DEVICES=0") and record["device"] in ("cpu", "cuda")
    report = (wd / "results" / "cohort" / "report.html").read_text()
    if not torch.cuda.is_available():
        for folder in ("agents/trained", "pin/trained", "svf"):
            assert f"tiny01, {folder}: a GPU is visible (CUDA_VISIBLE_DEVICES=0" in report, folder


def test_bad_manifest_stops_before_any_job(tmp_path):
    wd = _workdir(tmp_path, ["bad01"])
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["demo"]["activate"] = False  # so the demo files are expected on disk
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml"), "--cores", "1"], check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "cohort.tsv, row 2: file" in out and "pre_t1ce.nii.gz not found" in out, out[-2000:]
    assert not (wd / "results").exists()


def test_config_typo_is_caught(tmp_path):
    wd = _workdir(tmp_path, ["x01"])
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["seeed"] = 1
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run(["-n", "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml")], check=False)
    assert res.returncode != 0
    assert "seeed" in res.stdout + res.stderr


def test_consensus_settings_that_contradict_each_other_are_caught(tmp_path):
    wd = _workdir(tmp_path, ["x01"])
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg.setdefault("consensus", {}).update(agree_mm=4.0, overrule_mm=3.0)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run(["-n", "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml")], check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "config: consensus: expected 0 < agree_mm (4.0) <= overrule_mm (3.0)" in out and "Traceback" not in out, out[-2000:]


def test_modality_the_cohort_lacks_is_caught_before_any_job(tmp_path):
    wd = _workdir(tmp_path, ["x01"])
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["agent"]["modalities"] = ["t1ce", "t2"]
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run(["-n", "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml")], check=False)
    assert res.returncode != 0
    assert "agent.modalities ['t2']: patient x01 has t1ce, flair at both time points" in res.stdout + res.stderr


@pytest.mark.slow
def test_snakemake_own_report(tiny_run, tmp_path):
    import zipfile

    wd = tiny_run
    out = tmp_path / "report.zip"
    run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml"), "--report", str(out)])
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("report.html") for n in names)
    assert any(n.endswith("summary.tsv") for n in names) and any(n.endswith(".png") for n in names)


def _drop_rows(wd, keep):
    """Keep only the manifest rows for which ``keep(row)`` is true."""
    path = wd / "config" / "cohort.tsv"
    table = pd.read_csv(path, sep="\t", dtype=str)
    write_table(table[table.apply(keep, axis=1)], path)


def _run_workdir(wd):
    run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml"), "--cores", "2"])


@pytest.mark.slow
def test_cohort_without_ground_truth_or_lesion_masks_runs_to_the_report(tmp_path):
    """Issue 20: no pre-op landmarks (users' usual cohort) crashed evaluate_cohort, so there was no report.
    Issue 27: no tumour or cavity mask either (a clinical cohort, BraTS-Reg): both are derived from the svf
    registration, and every stage that uses a mask uses them."""
    wd = _workdir(tmp_path, ["nogt01"], overrides=TINY)
    _drop_rows(wd, lambda r: not (r["timepoint"] == "pre" and r["kind"] == "landmarks") and r["name"] not in ("tumor", "resection"))
    _run_workdir(wd)
    _assert_derived_lesions_in_use(wd, "nogt01")
    cohort = wd / "results" / "cohort"
    methods = {"identity", "ants_rigid", "ants_affine", "ants_syn", "ants_syn_nomask", "svf", "agent_baseline",
               "agent_guided", "agent_seeded", "pin", "consensus"}
    pred = pd.read_csv(cohort / "predictions.tsv", sep="\t", dtype={"landmark": str})
    assert set(pred["method"]) == methods
    assert (pred.groupby("method")["landmark"].apply(sorted) == pd.Series([["1", "2", "3"]] * len(methods), index=sorted(methods))).all()
    assert pred.loc[pred["method"] != "identity", "disagreement_mm"].notna().all()
    summary = pd.read_csv(cohort / "summary.tsv", sep="\t").set_index("method")
    assert set(summary.index) == methods and (summary["n"] == 0).all() and summary["mean_mm"].isna().all()
    assert summary.loc["ants_syn", "nonpositive_jacobian"] >= 0 and (summary["landmarks"] == 3).all()
    assert pd.read_csv(cohort / "errors.tsv", sep="\t").empty
    assert len(pd.read_csv(cohort / "landmarks_to_check.tsv", sep="\t")) == 3
    text = (cohort / "report.html").read_text()
    assert "No pre-operative ground truth" in text and "Landmarks to check first" in text
    assert 'href="#landmark-nogt01-' in text and 'id="landmark-nogt01-' in text


def _assert_derived_lesions_in_use(wd, patient):
    """The lesion folder holds derived masks that cover the demo's true lesions, and the stages used them:
    masked SyN differs from unmasked SyN, the guided agents ran, the log and the report say so."""
    from landmarkflow.cohort.preproc_folder import PreprocFolder
    from landmarkflow.imaging.image import Image
    from landmarkflow.imaging.resample import resample_mask
    from landmarkflow.preprocess import lesions

    res = wd / "results" / patient
    info = json.loads((res / "lesions" / lesions.INFO).read_text())
    assert info["pre"]["source"] == "derived" and info["post"]["source"] == "derived"
    folder = PreprocFolder(res / "preproc", lesions=res / "lesions")
    for tp, name in (("pre", "tumor"), ("post", "resection")):
        derived = folder.lesion(tp)
        assert derived is not None and derived.any()
        assert not folder.mask_path(tp, name).exists()  # the manifest had none
        truth = read_image(wd / "resources" / "demo" / patient / f"{tp}_{name}.nii.gz", dtype=None)
        if tp == "post":  # the true cavity in the pre-op world, where the preprocessing moved the post-op scan
            truth = Image(truth.data, folder.post_to_pre @ truth.affine)
        grid = folder.mask_image(tp, "brain")
        true = resample_mask(truth, grid.shape, grid.affine).data > 0
        # the tiny budget's svf (levels at 4 and 8 mm) blurs: the masks cover the lesion and more, but not the
        # brain (their Dice is measured on the demo: docs/benchmarks.md; on a real svf in test_lesions.py)
        assert (derived & true).sum() >= 0.8 * true.sum(), tp
        assert derived.sum() < 0.05 * folder.mask(tp, "brain").sum(), tp
    ants_log = (wd / "results" / "logs" / "register_ants" / f"{patient}.log").read_text()
    assert "ants_syn (cost-function masked)" in ants_log and "no tumour or resection mask" not in ants_log
    assert (res / "landmarks" / "agent_guided.csv").exists()
    assert "lesion masks: tumor derived" in (wd / "results" / "logs" / "complete_lesions" / f"{patient}.log").read_text()
    assert "lesion masks: tumor derived" in (wd / "results" / "cohort" / "report.html").read_text()


@pytest.mark.slow
def test_one_landmark_no_resection_mask_no_ants_runs_to_the_report(tmp_path):
    """Issue 20, the same class of bug: a patient with one landmark, every guided agent skipped (no resection
    mask, and none derived: lesions.derive off), and ANTs off with PIN on, in one tiny run; there is ground
    truth, so errors are scored."""
    wd = _workdir(tmp_path, ["one01"], overrides={**TINY, "ants": {"activate": False}, "lesions": {"derive": False}})
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["demo"]["landmarks"] = 1
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    _drop_rows(wd, lambda r: r["name"] != "resection")
    _run_workdir(wd)
    cohort = wd / "results" / "cohort"
    summary = pd.read_csv(cohort / "summary.tsv", sep="\t").set_index("method")
    assert set(summary.index) == {"identity", "svf", "agent_baseline", "pin", "rater_expert2", "consensus"}  # no agent_seeded
    assert (summary["n"] == 1).all() and summary["mean_mm"].notna().all()
    fits = pd.read_csv(cohort / "rigid_fit.tsv", sep="\t")
    assert fits["status"].str.contains("at least 3 landmarks").all()  # reported, not fatal
    warnings = pd.read_csv(cohort / "warnings.tsv", sep="\t")["warning"]
    assert warnings.str.contains("guided agent is skipped").any()
    consensus = read_landmarks(wd / "results" / "one01" / "landmarks" / "consensus.csv")
    # the second registration takes the first one's place; alone, nothing confirms it
    assert consensus["rule"].tolist() in (["agreement"], ["unconfirmed"], ["disagreement"])
    assert consensus["methods"].str.startswith("svf").all()
    assert (cohort / "report.html").stat().st_size > 20_000


def test_a_damaged_file_stops_validation_with_one_message_and_no_traceback(small_cohort, tmp_path):
    """Issue 18: the validation job's clear message used to come after a Python traceback."""
    manifest, folder = small_cohort
    image = folder / "p1" / "pre_t1.nii.gz"
    raw = bytearray(image.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    image.write_bytes(bytes(raw))
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["cohort"] = str(manifest)
    cfg["demo"]["activate"] = False
    cfg["agent"]["modalities"] = []
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    wd = tmp_path / "wd"
    res = run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(config), "--cores", "1",
               "results/cohort/manifest.tsv"], check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "landmarkflow: error: problem in the cohort manifest:" in out and "pre_t1.nii.gz: damaged gzip stream" in out, out[-3000:]
    assert "Traceback" not in out
    log = (wd / "results" / "logs" / "validate_patient" / "P1.log").read_text()
    assert "damaged gzip stream" in log and "Traceback" not in log
    assert not (wd / "results" / "P1" / "manifest.tsv").exists()


def _dry_run_jobs(wd):
    """(rule, wildcards) of every job a dry run schedules."""
    import re

    res = run(["-n", "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml")])
    out = res.stdout + res.stderr
    jobs = re.findall(r"^(?:rule|localrule|checkpoint|localcheckpoint) (\w+):\n((?:    .*\n)*)", out, re.M)
    return [(rule, dict(re.findall(r"(\w+)=([^,\s]+)", next((line for line in body.splitlines() if "wildcards:" in line), ""))))
            for rule, body in jobs], out


@pytest.mark.slow
def test_adding_a_patient_schedules_no_job_for_the_others(tiny_run, tmp_path):
    """Issue 17: the manifest was an input of every patient's preprocessing, so one new patient reran all."""
    wd = copy_run(tiny_run, tmp_path)
    manifest = wd / "config" / "cohort.tsv"
    table = pd.concat([pd.read_csv(manifest, sep="\t", dtype=str),
                       synthetic.manifest_rows(["tiny02"], wd / "resources" / "demo", wd / "config")])
    write_table(table, manifest)
    jobs, out = _dry_run_jobs(wd)
    assert [j for j in jobs if j[1].get("patient") == "tiny01"] == [], out[-3000:]
    assert ("validate_patient", {"patient": "tiny02"}) in jobs and ("make_demo_patient", {"patient": "tiny02"}) in jobs


@pytest.mark.slow
def test_a_detection_setting_reruns_detection_and_not_training(tiny_run, tmp_path):
    """Issue 17: test-time settings travelled with the training and were then taken from the saved model."""
    wd = copy_run(tiny_run, tmp_path, agent={"max_shift_mm": 7.0}, pin={"iterations": 4})
    jobs, out = _dry_run_jobs(wd)
    rules = [r for r, _ in jobs]
    assert "train_agents" not in rules and "train_pin" not in rules, out[-3000:]
    assert rules.count("redetect") == 2 and "redetect_seeded" in rules and "redetect_pin" in rules and "build_report" in rules
    # and the redetection uses the config's value, not the model's
    run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml"), "--cores", "2",
         "results/tiny01/landmarks/pin.csv"])
    ends = pd.read_csv(wd / "results" / "tiny01" / "pin" / "endpoints.tsv", sep="\t")
    assert (ends["steps"] == 4).all()


@pytest.mark.slow
def test_a_stage_switched_off_leaves_no_stale_rows(tiny_run, tmp_path):
    """Issue 17: evaluation and report scanned results/*/landmarks/*.csv, so an old pin.csv was still scored."""
    wd = copy_run(tiny_run, tmp_path, pin={"activate": False})
    assert (wd / "results" / "tiny01" / "landmarks" / "pin.csv").exists()
    _run_workdir(wd)
    summary = pd.read_csv(wd / "results" / "cohort" / "summary.tsv", sep="\t")
    assert "pin" not in set(summary["method"]) and "agent_guided" in set(summary["method"])
    pred = pd.read_csv(wd / "results" / "cohort" / "predictions.tsv", sep="\t")
    assert "pin" not in set(pred["method"])
    assert "Not part of this run (the PIN stage is not active)" in (wd / "results" / "cohort" / "report.html").read_text()


def test_the_workflow_runs_as_a_module_with_a_prefix(tmp_path):
    """Issue 17: a study can include the workflow as a Snakemake module under a prefix (dry run)."""
    wd = _workdir(tmp_path, ["mod01"], overrides=TINY)
    (wd / "Snakefile").write_text(f"""
configfile: "config/config.yaml"

module landmarkflow:
    snakefile: "{ROOT / 'Snakefile'}"
    config: config
    prefix: "study"

use rule * from landmarkflow as lf_*
""")
    res = run(["-n", "-s", str(wd / "Snakefile"), "-d", str(wd)])
    out = res.stdout + res.stderr
    for target in ("study/results/cohort/report.html", "study/resources/demo/mod01/pre_t1ce.nii.gz",
                   "study/results/mod01/manifest.tsv"):
        assert target in out, out[-3000:]


def test_a_seed_run_plans_the_real_workflow_in_its_own_folder_on_the_shared_demo(tmp_path):
    """Issue 31: ``landmarkflow seeds`` makes the demo once in the project folder, then each seed's run is
    the real workflow in its own folder (dry run here; the runner itself is tested in test_seeds)."""
    import subprocess

    from landmarkflow.evaluate.seeds import SeedRuns

    wd = _workdir(tmp_path, ["seed01"], overrides=TINY)
    runs = SeedRuns(cores=2, snakemake_args=["--quiet", "rules"], snakefile=ROOT / "Snakefile", workdir=wd)
    assert subprocess.run(runs.demo(), cwd=wd, capture_output=True).returncode == 0
    assert (wd / "resources" / "demo" / "seed01" / "pre_t1ce.nii.gz").exists()
    runs.folder(9).mkdir(parents=True)
    res = subprocess.run(runs.command(9) + ["-n"], cwd=wd, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "validate_patient" in out and "make_demo_patient" not in out  # the seed reads the shared demo
    assert (runs.folder(9) / ".snakemake").is_dir() and not (wd / "results" / "seed01").exists()


def test_brats_export_round_trips_through_the_reader(tiny_run, tmp_path, monkeypatch, capsys):
    """Issue 30: results in BraTS-Reg's form: the consensus as BraTS-Reg's LPS CSV (read back by the
    BraTS-Reg reader to the same RAS points) and ANTs' Jacobian determinant on the baseline's own grid."""
    from landmarkflow.cli import main
    from landmarkflow.io.brats import read_brats_landmarks

    monkeypatch.chdir(tiny_run)
    assert main(["brats-export", "config/cohort.tsv", "--out", str(tmp_path / "out")]) == 0
    assert "wrote 1 case(s)" in capsys.readouterr().out
    back = read_brats_landmarks(tmp_path / "out" / "tiny01.csv")
    consensus = read_landmarks(tiny_run / "results" / "tiny01" / "landmarks" / "consensus.csv")
    assert back["landmark"].tolist() == consensus["landmark"].tolist()
    np.testing.assert_allclose(points_of(back), points_of(consensus), atol=1e-4)
    detj = read_image(tmp_path / "out" / "tiny01_detj.nii.gz")
    baseline = read_image(tiny_run / "resources" / "demo" / "tiny01" / "pre_t1ce.nii.gz")
    assert detj.shape == baseline.shape and np.allclose(detj.affine, baseline.affine, atol=1e-4)
    ants_jac = read_image(tiny_run / "results" / "tiny01" / "ants" / "ants_syn_jacobian.nii.gz")
    inside = detj.data != 1.0
    assert 0.2 < inside.mean() < 1.0 and detj.data[0, 0, 0] == 1.0  # 1 outside the preprocessed box
    assert abs(detj.data[inside].mean() - ants_jac.data.mean()) < 0.05
    assert main(["brats-export", "config/cohort.tsv", "--out", str(tmp_path / "o2"), "--method", "pin_x"]) == 2
    assert "pin_x landmarks of tiny01 not found" in capsys.readouterr().err
