"""Accuracy over workflow seeds: run the workflow once per seed and summarise the spread (``make seeds``).

A patient-specific agent's error can change by 2x with the seed alone, so one run's table is one draw.
:func:`run_seeds` runs ``snakemake`` once per seed (``--config seed=S``; the demo cohort keeps its own
``demo.seed``, so only the methods' randomness changes), keeps each run's ``summary.tsv`` and
``errors.tsv`` under ``results/seeds/seed-<S>/``, and :func:`aggregate` writes
``results/seeds/summary.tsv``: per method, the mean over seeds of each run's mean and median error with
their min-max range.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.files import atomic_path, write_table
from ..core.methods import sort_methods

log = logging.getLogger(__name__)

#: per method: the runs, then for mean_mm and median_mm their mean over the seeds, min and max
COLUMNS = ["method", "seeds", "n", "mean_mm", "mean_min", "mean_max", "median_mm", "median_min", "median_max",
           "robustness", "over_5mm", "flag_catch", "flag_false_alarm"]


def aggregate(summaries: dict) -> pd.DataFrame:
    """``summaries``: {seed: summary.tsv path or DataFrame} of runs on the same cohort -> one row per method
    (:data:`COLUMNS`). A method missing from some runs counts over the runs that have it (``seeds``)."""
    frames = []
    for seed, s in summaries.items():
        df = s if isinstance(s, pd.DataFrame) else pd.read_csv(s, sep="\t")
        frames.append(df.assign(seed=seed))
    if not frames:
        raise ValueError("no summaries to aggregate")
    allruns = pd.concat(frames, ignore_index=True)
    allruns = allruns[pd.to_numeric(allruns["n"], errors="coerce").fillna(0) > 0]
    rows = []
    for method, g in allruns.groupby("method", sort=False):
        row = {"method": method, "seeds": g["seed"].nunique(), "n": int(g["n"].max())}
        for col in ("mean_mm", "median_mm"):
            v = g[col].to_numpy(dtype=float)
            key = col[:-3]
            row.update({col: float(np.mean(v)), f"{key}_min": float(np.min(v)), f"{key}_max": float(np.max(v))})
        for col in ("robustness", "over_5mm", "flag_catch", "flag_false_alarm"):
            row[col] = float(np.nanmean(g[col])) if col in g and g[col].notna().any() else np.nan
        rows.append(row)
    return sort_methods(pd.DataFrame(rows, columns=COLUMNS))


def run_seeds(seeds, cores: int = 2, snakemake_args=(), results="results", snakemake: str | None = None) -> pd.DataFrame:
    """Run the workflow once per seed in the current project folder (one after the other: each run
    overwrites ``results/``; the runs' tables are kept under ``results/seeds``) and aggregate them."""
    seeds = [int(s) for s in seeds]
    if len(seeds) < 3:
        log.warning("%d seed(s): accuracy is meant as the mean over at least 3", len(seeds))
    exe = snakemake or str(Path(sys.executable).with_name("snakemake"))
    out = Path(results) / "seeds"
    kept = {}
    for seed in seeds:
        cmd = [exe, "--cores", str(cores), "--config", f"seed={seed}", *snakemake_args]
        log.info("seed %d: %s", seed, " ".join(cmd))
        done = subprocess.run(cmd)
        if done.returncode:
            raise RuntimeError(f"the workflow run with seed {seed} failed (exit {done.returncode}); see its log above")
        dest = out / f"seed-{seed}"
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("summary.tsv", "errors.tsv"):
            src = Path(results) / "cohort" / name
            if src.exists():
                with atomic_path(dest / name) as tmp:
                    shutil.copyfile(src, tmp)
        kept[seed] = dest / "summary.tsv"
    table = aggregate(kept)
    write_table(table, out / "summary.tsv", float_format="%.4f")
    return table


def format_table(table: pd.DataFrame) -> str:
    """The aggregate as the README shows it: mean [min-max] of the runs' means and medians."""
    lines = ["| method | mean (mm) [range over seeds] | median (mm) [range] | seeds |", "| --- | --- | --- | --- |"]
    for r in table.itertuples():
        lines.append(f"| `{r.method}` | {r.mean_mm:.2f} [{r.mean_min:.2f}-{r.mean_max:.2f}] | "
                     f"{r.median_mm:.2f} [{r.median_min:.2f}-{r.median_max:.2f}] | {r.seeds} |")
    return "\n".join(lines)
