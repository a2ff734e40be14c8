"""Accuracy over workflow seeds (issue 14): the aggregate of runs."""

import numpy as np
import pandas as pd
import pytest

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


def test_a_failed_seed_run_stops_with_its_seed(tmp_path):
    with pytest.raises(RuntimeError, match="seed 7 failed"):
        seeds.run_seeds([7], snakemake="false", results=tmp_path)
    assert not (tmp_path / "seeds" / "summary.tsv").exists()
