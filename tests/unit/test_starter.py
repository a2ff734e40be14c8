"""Issue 30: `landmarkflow init MANIFEST` writes a config for a real cohort, its values derived from the manifest."""

import pytest
import yaml

from landmarkflow.cli import main
from landmarkflow.core import config
from landmarkflow.core.files import write_table


def _load(path):
    """The written config, checked against the schema as Snakemake checks it."""
    import jsonschema

    cfg = yaml.safe_load(path.read_text())
    jsonschema.validate(config.complete(dict(cfg)), config.schema())
    return cfg


def test_init_on_whole_head_scans_without_tumour_masks(small_cohort, tmp_path, monkeypatch, capsys):
    m_path, _ = small_cohort
    monkeypatch.chdir(tmp_path)
    assert main(["init", str(m_path), "--out", "my.yaml"]) == 0
    assert "wrote my.yaml" in capsys.readouterr().out
    cfg = _load(tmp_path / "my.yaml")
    assert cfg["cohort"] == "cohort.tsv" and cfg["demo"]["activate"] is False and cfg["pin"]["activate"] is False
    assert cfg["ants"]["preset"] == "quality" and cfg["agent"]["modalities"] == ["t1"]
    assert cfg["preprocess"]["skull_strip"] == "auto"  # noise everywhere: not skull-stripped
    text = (tmp_path / "my.yaml").read_text()
    assert "1 of 1 patients have no tumour mask" in text and "no resection mask" not in text
    assert main(["init", str(m_path), "--out", "my.yaml"]) == 2  # an existing file is kept
    assert "my.yaml: exists already" in capsys.readouterr().err
    assert main(["init", str(m_path), "--out", "my.yaml", "--force"]) == 0


def test_init_on_skull_stripped_scans_with_two_modalities(demo_patient, tmp_path, monkeypatch):
    from landmarkflow.demo import synthetic

    folder, _ = demo_patient
    rows = synthetic.manifest_rows(["demo01"], folder, tmp_path)
    rows = rows[~rows["path"].str.contains("resection")]  # one patient without a cavity mask
    write_table(rows, tmp_path / "cohort.tsv")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "cohort.tsv"]) == 0
    cfg = _load(tmp_path / "config" / "cohort.yaml")
    assert cfg["preprocess"]["skull_strip"] == "none" and cfg["agent"]["modalities"] == ["t1ce", "flair"]
    text = (tmp_path / "config" / "cohort.yaml").read_text()
    assert "the scans look skull-stripped (demo01" in text
    assert "1 of 1 patients have no resection mask: one is derived from the svf registration" in text


@pytest.mark.e2e
def test_the_written_config_runs_the_workflow_dry(small_cohort, tmp_path, monkeypatch):
    import subprocess
    import sys

    from testdata import ROOT

    m_path, _ = small_cohort
    monkeypatch.chdir(tmp_path)
    assert main(["init", str(m_path), "--out", "my.yaml"]) == 0
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(tmp_path / "my.yaml"), "--quiet", "rules"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "validate_patient" in res.stdout + res.stderr
