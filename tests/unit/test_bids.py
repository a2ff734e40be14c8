"""Issue 43: a longitudinal BIDS dataset becomes a manifest (``landmarkflow bids-manifest``): sessions to time points,
suffixes and entities to modalities, landmarks and masks from derivatives/landmarkflow/."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from testdata import ROOT
from landmarkflow.cli import main
from landmarkflow.cohort.manifest import load_manifest
from landmarkflow.cohort.validation import validate_contents
from landmarkflow.core.errors import InputError
from landmarkflow.io import bids

#: demo file -> (session, BIDS name after sub-01_ses-<session>_), raw data
RAW = {"pre_t1ce.nii.gz": ("preop", "ce-gadolinium_T1w.nii.gz"), "pre_flair.nii.gz": ("preop", "FLAIR.nii.gz"),
       "post_t1ce.nii.gz": ("postop", "ce-gadolinium_T1w.nii.gz"), "post_flair.nii.gz": ("postop", "FLAIR.nii.gz")}
#: the same for derivatives/landmarkflow
DERIVED = {"pre_landmarks_expert.csv": ("preop", "desc-expert_landmarks.csv"),
           "post_landmarks_expert.csv": ("postop", "desc-expert_landmarks.csv"),
           "pre_tumor.nii.gz": ("preop", "label-tumor_mask.nii.gz"),
           "post_resection.nii.gz": ("postop", "label-resection_mask.nii.gz")}


def _dataset(root, demo_folder, sessions=("preop", "postop")):
    ds = root / "ds"
    (ds).mkdir(parents=True)
    (ds / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    rename = dict(zip(("preop", "postop"), sessions))
    for table, base in ((RAW, ds), (DERIVED, ds / bids.DERIVATIVES)):
        for src, (ses, name) in table.items():
            ses = rename[ses]
            dest = base / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_{name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(demo_folder / "demo01" / src, dest)
    return ds


def test_a_bids_dataset_becomes_a_manifest_that_validates_and_runs_dry(demo_patient, tmp_path, monkeypatch, capsys):
    folder, _ = demo_patient
    ds = _dataset(tmp_path, folder)
    (ds / "sub-01" / "ses-preop" / "anat" / "sub-01_ses-preop_dwi.nii.gz").write_bytes(b"")  # a suffix not used
    assert main(["bids-manifest", str(ds), "--out", str(tmp_path / "cfg")]) == 0
    assert "1 patient(s), 8 file(s)" in capsys.readouterr().out
    m = validate_contents(load_manifest(tmp_path / "cfg" / "cohort.tsv"))
    rows = set(zip(m.table["timepoint"], m.table["kind"], m.table["name"]))
    assert rows == {(tp, "image", mod) for tp in ("pre", "post") for mod in ("t1ce", "flair")} | {
        ("pre", "landmarks", "expert"), ("post", "landmarks", "expert"), ("pre", "mask", "tumor"), ("post", "mask", "resection")}
    assert m.patients == ["sub-01"] and m.reference_modality("sub-01") == "t1ce"
    written = (tmp_path / "cfg" / "cohort.tsv").read_text().splitlines()[1:]
    assert written and not any(os.path.isabs(line.split("\t")[-1]) for line in written)  # relative to the manifest
    # init's config, then a dry run of the workflow from another folder
    assert main(["init", str(tmp_path / "cfg" / "cohort.tsv"), "--out", str(tmp_path / "cfg" / "cohort.yaml")]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(elsewhere),
                          "--configfile", str(tmp_path / "cfg" / "cohort.yaml"), "--quiet", "rules"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "validate_patient" in res.stdout + res.stderr


def test_modalities_from_suffixes_and_entities():
    assert bids.modality({"suffix": "T1w", "ceagent": "gadolinium"}) == "t1ce"
    assert [bids.modality({"suffix": s}) for s in ("T1w", "T2w", "FLAIR", "dwi", "bold")] == ["t1", "t2", "flair", None, None]


def test_sessions_are_guessed_or_named_and_an_unclear_case_lists_them():
    assert bids.sessions_to_timepoints("01", ["post", "pre"]) == {"pre": "pre", "post": "post"}
    assert bids.sessions_to_timepoints("01", ["Baseline", "FollowUp"]) == {"Baseline": "pre", "FollowUp": "post"}
    assert bids.sessions_to_timepoints("01", ["20230612", "20230101"]) == {"20230101": "pre", "20230612": "post"}
    assert bids.sessions_to_timepoints("01", ["a", "b"], pre="b", post="a") == {"b": "pre", "a": "post"}
    with pytest.raises(InputError, match=r"subject 01: sessions a, b; cannot tell which is pre- and which post-operative"):
        bids.sessions_to_timepoints("01", ["a", "b"])
    with pytest.raises(InputError, match=r"subject 01: sessions 1, 2, 3; expected two .* --pre-session and --post-session"):
        bids.sessions_to_timepoints("01", ["1", "2", "3"])
    with pytest.raises(InputError, match=r"--pre-session 'x' and --post-session 'b' must both be among them"):
        bids.sessions_to_timepoints("01", ["a", "b"], pre="x", post="b")


def test_unclear_sessions_and_missing_landmarks_are_clear_errors(demo_patient, tmp_path, capsys):
    folder, _ = demo_patient
    ds = _dataset(tmp_path, folder, sessions=("a", "b"))
    assert main(["bids-manifest", str(ds), "--out", str(tmp_path / "cfg")]) == 2
    assert "subject 01: sessions a, b; cannot tell" in capsys.readouterr().err
    assert main(["bids-manifest", str(ds), "--out", str(tmp_path / "cfg"), "--pre-session", "a", "--post-session", "b"]) == 0
    shutil.rmtree(ds / bids.DERIVATIVES)
    assert main(["bids-manifest", str(ds), "--out", str(tmp_path / "cfg2"), "--pre-session", "a", "--post-session", "b"]) == 2
    assert "no subject has post-operative landmarks" in capsys.readouterr().err
    assert main(["bids-manifest", str(tmp_path), "--out", str(tmp_path / "cfg3")]) == 2
    assert "not a BIDS dataset (no dataset_description.json)" in capsys.readouterr().err
