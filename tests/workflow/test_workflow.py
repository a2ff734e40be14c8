"""The Snakemake workflow: lint, dry run of the default config, a real run on a tiny cohort."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from landmarkflow import io, synthetic

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run(args, cwd=ROOT, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    res = subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def test_lint_is_clean():
    res = run(["--lint"], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Congratulations" in res.stdout + res.stderr


def test_dry_run_schedules_every_rule():
    res = run(["-n", "--forceall", "--quiet", "rules"])
    out = res.stdout + res.stderr
    for rule in ("make_demo_patient", "validate_cohort", "all"):
        assert rule in out, out


def test_default_manifest_matches_the_demo_generator():
    committed = pd.read_csv(ROOT / "config" / "cohort.tsv", sep="\t", dtype=str)
    patients = list(dict.fromkeys(committed["patient"]))
    expected = synthetic.manifest_rows(patients, ROOT / "resources" / "demo", ROOT / "config")
    pd.testing.assert_frame_equal(committed, expected)


def _workdir(tmp_path, patients, seed=3):
    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True)
    io.write_table(synthetic.manifest_rows(patients, wd / "resources" / "demo", wd / "config"), wd / "config" / "cohort.tsv")
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["seed"] = seed
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return wd


@pytest.mark.e2e
@pytest.mark.slow
def test_real_run_on_one_demo_patient(tmp_path):
    wd = _workdir(tmp_path, ["tiny01"])
    run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml"), "--cores", "2"])
    table = pd.read_csv(wd / "results" / "cohort" / "manifest.tsv", sep="\t")
    assert set(table["patient"]) == {"tiny01"} and len(table) == len(synthetic.DEMO_SPEC)
    assert (wd / "results" / "logs" / "validate_cohort" / "validate_cohort.log").exists()
    assert (wd / "results" / "benchmarks" / "make_demo_patient" / "tiny01.tsv").exists()
    lm = io.read_landmarks(wd / "resources" / "demo" / "tiny01" / "post_landmarks_expert.csv")
    assert len(lm) == 3
    # nothing left half-written
    assert not list(wd.rglob("*.part*"))


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


def test_envs_mirror_the_constraints():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==")
            pins[name.strip().lower()] = ver.strip()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        for req in pip:
            name, ver = req.split("==")
            assert pins.get(name.lower()) == ver, f"{env.name}: {req} differs from constraints.txt ({pins.get(name.lower())})"


def test_rules_declare_log_and_env():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        assert "run:" not in text, f"{smk.name}: no run: blocks, call a script"
    assert shutil.which("git")
