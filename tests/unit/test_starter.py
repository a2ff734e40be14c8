"""Issue 30: `landmarkflow init MANIFEST` writes a config for a real cohort, its values derived from the manifest."""

import numpy as np
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
    assert cfg["cohort"] == str(m_path.resolve()) and cfg["demo"]["activate"] is False and cfg["pin"]["activate"] is False
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


def test_bids_names_pick_the_right_reference_and_the_config_works_from_anywhere(small_cohort, tmp_path, monkeypatch, capsys):
    """Issue 43: with BIDS suffixes as modality names the reference modality became FLAIR (alphabetical): names
    now match case aside and through their aliases (T1Gd, T1c -> t1ce, T1w -> t1, T2w -> t2), the validation says
    which modality is the reference and why, and init's config names the manifest by an absolute path."""
    from landmarkflow.cohort import manifest
    from landmarkflow.imaging.image import read_image
    from testdata import make_image

    assert [manifest.canonical_modality(n) for n in ("T1Gd", "T1c", "t1CE", "T1w", "T2w", "FLAIR", "dwi")] == \
        ["t1ce", "t1ce", "t1ce", "t1", "t2", "flair", "dwi"]
    m_path, folder = small_cohort
    for k, tp in enumerate(("pre", "post")):  # a second modality on the same grid
        grid = read_image(folder / "p1" / f"{tp}_t1.nii.gz")
        make_image(folder / "p1" / f"{tp}_flair.nii.gz", grid.shape, grid.affine, rng=np.random.default_rng(10 + k))
    text = m_path.read_text().replace("\tt1\t", "\tT1w\t")
    m_path.write_text(text + "P1\tpre\timage\tFLAIR\tp1/pre_flair.nii.gz\nP1\tpost\timage\tFLAIR\tp1/post_flair.nii.gz\n")
    m = manifest.load_manifest(m_path)
    ref, why = m.reference_choice("P1")
    assert ref == "T1w" and "T1w (as t1): the first of the preference t1ce, t1, t2, flair" in why
    assert not [w for w in m.warnings if "reference modality" in w]  # a preferred one: nothing to warn about
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(m_path)]) == 0
    assert "P1: reference modality T1w (as t1)" in capsys.readouterr().out
    # a modality that no preference names is chosen by name, and said so as a warning
    other = manifest.load_manifest(m_path, preference=("t2",))
    assert other.reference_modality("P1") == "FLAIR"
    assert any("reference modality FLAIR: none of the preference t2" in w for w in other.warnings)
    # init: the written config names the manifest by its absolute path (it used to be relative to where init ran)
    assert main(["init", str(m_path), "--out", "sub/my.yaml"]) == 0
    cfg = _load(tmp_path / "sub" / "my.yaml")
    assert cfg["cohort"] == str(m_path.resolve()) and cfg["agent"]["modalities"] == ["T1w", "FLAIR"]
