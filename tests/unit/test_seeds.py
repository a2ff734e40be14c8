"""Accuracy over workflow seeds (issue 14): the aggregate of runs."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landmarkflow.core.errors import InputError
from landmarkflow.evaluate import seeds


def _summary(rows):
    return pd.DataFrame(rows, columns=["method", "n", "mean_mm", "median_mm", "robustness", "over_5mm", "flag_catch",
                                       "flag_false_alarm"])


def test_aggregate_gives_the_mean_and_range_over_seeds(tmp_path):
    runs = {
        42: _summary([["agent_guided", 9, 1.3, 0.9, 0.8, 0.0, np.nan, np.nan], ["consensus", 9, 0.7, 0.5, 1.0, 0.0, 0.5, 0.2],
                      ["identity", 9, 3.8, 3.9, 0.0, 0.0, np.nan, np.nan]]),
        1: _summary([["agent_guided", 9, 2.3, 1.1, 0.6, 0.1, np.nan, np.nan], ["consensus", 9, 0.6, 0.5, 1.0, 0.0, np.nan, 0.4]]),
        2: _summary([["agent_guided", 9, 1.6, 1.0, 0.7, 0.0, np.nan, np.nan], ["consensus", 9, 0.8, 0.4, 1.0, 0.0, 1.0, 0.0],
                     ["pin", 0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan]]),
    }
    runs[2].to_csv(tmp_path / "s2.tsv", sep="\t", index=False)  # files and tables alike
    t = seeds.aggregate({42: runs[42], 1: runs[1], 2: tmp_path / "s2.tsv"}).set_index("method")
    assert list(t.index) == ["consensus", "identity", "agent_guided"]  # method order; no row without ground truth
    g = t.loc["agent_guided"]
    assert g["seeds"] == 3 and g["mean_mm"] == pytest.approx(5.2 / 3) and (g["mean_min"], g["mean_max"]) == (1.3, 2.3)
    assert g["median_mm"] == pytest.approx(1.0) and g["robustness"] == pytest.approx(0.7)
    c = t.loc["consensus"]
    assert c["flag_catch"] == pytest.approx(0.75)  # over the runs where it is defined
    assert np.isnan(g["flag_catch"])
    assert t.loc["identity", "seeds"] == 1
    text = seeds.format_table(t.reset_index())
    assert "| `agent_guided` | 1.73 [1.30-2.30] | 1.00 [0.90-1.10] | 3 |" in text


#: a small real workflow with the shape run_seeds relies on: a demo rule, a cohort the config names, a summary
TOY_SNAKEFILE = r"""
import os
from pathlib import Path
DEMO = os.path.relpath(Path(config["cohort"]).parent / "made.txt")  # like the manifest's paths: relative inside
DEMO = DEMO if not DEMO.startswith("..") else str(Path(config["cohort"]).parent / "made.txt")  # the folder, else absolute

rule all:
    input: DEMO
    output: "results/cohort/summary.tsv"
    params: seed=config["seed"], extra=config.get("extra", ""), peers=str(Path(os.getcwd()).parent)
    shell:
        "touch {params.peers}/started-{params.seed}; "
        "for i in $(seq 300); do [ $(ls {params.peers}/started-* | wc -l) -ge {config[wait_for]} ] && break; sleep 0.1; done; "
        "[ $(ls {params.peers}/started-* | wc -l) -ge {config[wait_for]} ] || exit 1; "
        "echo {params.extra} > results/extra.txt; "
        "printf 'method\\tn\\tmean_mm\\tmedian_mm\\trobustness\\tover_5mm\\tflag_catch\\tflag_false_alarm\\n"
        "identity\\t3\\t{params.seed}\\t1\\t1\\t0\\t\\t\\n' > {output}"

rule make_demo_patient:
    output: "data/made.txt"
    shell: "echo made >> {output}"
"""


def _toy_project(tmp_path, wait_for):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cohort.tsv").write_text("patient\n")
    (tmp_path / "config.yaml").write_text(f"cohort: data/cohort.tsv\nseed: 42\nwait_for: {wait_for}\ndemo: {{activate: true}}\n")
    return tmp_path


def test_seeds_run_at_once_each_in_its_own_folder_and_are_aggregated(tmp_path):
    """Issue 31: a real Snakemake run per seed, in parallel (each seed's job waits until both have started, so
    one after the other would not finish), each with its own results folder and lock."""
    wd = _toy_project(tmp_path, wait_for=2)
    table = seeds.run_seeds([5, 7], cores=1, snakemake_args=["--config", "extra=kept"], configfile="config.yaml",
                            parallel=True, workdir=wd, snakemake=str(Path(sys.executable).with_name("snakemake")))
    out = wd / "results" / "seeds"
    for seed in (5, 7):
        summary = pd.read_csv(out / f"seed-{seed}" / "results" / "cohort" / "summary.tsv", sep="\t")
        assert summary["mean_mm"].tolist() == [seed]  # each run had its own seed and kept its own results
        assert (out / f"seed-{seed}" / "results" / "extra.txt").read_text().strip() == "kept"
        assert (out / f"seed-{seed}" / ".snakemake").is_dir()  # its own metadata and lock
    assert (wd / "data" / "made.txt").read_text() == "made\n"  # the demo was made once, in the project
    row = table.set_index("method").loc["identity"]
    assert row["seeds"] == 2 and row["mean_mm"] == 6 and (row["mean_min"], row["mean_max"]) == (5, 7)
    assert pd.read_csv(out / "summary.tsv", sep="\t")["mean_mm"].tolist() == [6]
    assert not (wd / "results" / "cohort").exists()  # nothing written where a plain run keeps its results


def test_the_seeds_set_seed_and_cohort_themselves(tmp_path):
    wd = _toy_project(tmp_path, wait_for=1)
    with pytest.raises(InputError, match="--config seed=3: landmarkflow seeds sets seed and cohort itself"):
        seeds.run_seeds([1], snakemake_args=["--config", "seed=3"], configfile="config.yaml", workdir=wd)


def test_a_failed_seed_run_stops_with_its_seed(tmp_path):
    wd = _toy_project(tmp_path, wait_for=1)
    (wd / "config.yaml").write_text("cohort: data/cohort.tsv\ndemo: {activate: false}\n")
    with pytest.raises(RuntimeError, match="seed 7 failed"):
        seeds.run_seeds([7], snakemake="false", configfile="config.yaml", workdir=wd)
    assert not (wd / "results" / "seeds" / "summary.tsv").exists()


def test_a_users_config_is_merged_over_the_workflows_as_a_plain_run_does(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("cohort: config/cohort.tsv\ndemo: {activate: false}\nagent: {patch: 17}\n")
    (tmp_path / "my.yaml").write_text("agent: {updates: 5}\n")
    runs = seeds.SeedRuns(configfile="my.yaml", workdir=tmp_path, snakemake="snakemake")
    i = runs.common.index("--configfile")
    assert runs.common[i + 1:i + 3] == [str(tmp_path / "config" / "config.yaml"), str(tmp_path / "my.yaml")]
    assert runs.settings["agent"]["patch"] == 17 and runs.settings["agent"]["updates"] == 5 and runs.demo() is None
    assert f"cohort={tmp_path / 'config' / 'cohort.tsv'}" in runs.command(3) and "seed=3" in runs.command(3)
    assert seeds.SeedRuns(workdir=tmp_path, snakemake="snakemake").common.count(str(tmp_path / "config" / "config.yaml")) == 1


def test_snakemake_arguments_and_targets_stay_out_of_the_runs_config(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("cohort: c.tsv\n")
    (tmp_path / "config" / "radiomics.yaml").write_text("{}\n")
    runs = seeds.SeedRuns(snakemake_args=["--config", "x=1", "all", "-p"], workdir=tmp_path, snakemake="snakemake")
    cmd = runs.command(4)
    config = cmd[cmd.index("--config") + 1:]
    assert config == ["seed=4", f"cohort={tmp_path / 'c.tsv'}",
                      'radiomics={"params": "' + str(tmp_path / "config" / "radiomics.yaml") + '"}', "x=1"]
    assert cmd.index("all") < cmd.index("--config") and "-p" in cmd[:cmd.index("--config")]
