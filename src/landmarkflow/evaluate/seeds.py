"""Accuracy over workflow seeds: run the workflow once per seed and summarise the spread (``make seeds``).

A patient-specific agent's error can change by 2x with the seed alone, so one run's table is one draw.
:func:`run_seeds` runs ``snakemake`` once per seed (``--config seed=S``; the demo cohort keeps its own
``demo.seed``, so only the methods' randomness changes), each in its own working folder
``results/seeds/seed-<S>/`` (a whole ``results/`` of its own), and :func:`aggregate` writes
``results/seeds/summary.tsv``: per method, the mean over seeds of each run's mean and median error with
their min-max range.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import layout
from ..core.config import complete, load, merge
from ..core.errors import InputError
from ..core.files import write_table
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


class SeedRuns:
    """The command lines of a study over seeds: the demo cohort once, then one run per seed, each in its own
    working folder ``OUT/seed-<S>/`` (Snakemake's ``--directory``: its own ``results/``, metadata and lock).

    Relative paths are resolved here, before the runs change folder: ``snakefile``, ``configfile``, the
    cohort the config names (relative to ``workdir``, the folder a plain ``snakemake`` would run in) and
    ``out``. Items of a ``--config`` among ``snakemake_args`` join the runs' own ``--config``."""

    def __init__(self, cores: int = 2, snakemake_args=(), out=layout.SEEDS, configfile="config/config.yaml",
                 snakefile="Snakefile", workdir=".", snakemake: str | None = None):
        self.workdir = Path(workdir).resolve()
        self.out = (self.workdir / out).resolve()
        snakefile = (self.workdir / snakefile).resolve()
        configfile = (self.workdir / configfile).resolve()
        # a plain run merges the given config over the workflow's config/config.yaml (its configfile:
        # directive, relative to the working folder, which a seed's folder lacks): name both, in that order
        base = self.workdir / "config" / "config.yaml"
        files = [base.resolve()] if base.exists() and base.resolve() != configfile else []
        files.append(configfile)
        settings: dict = {}
        for f in files:
            merge(settings, load(f))  # a file that is not plain YAML is named with its line (a tag refused)
        self.settings = complete(settings)
        exe = snakemake or str(Path(sys.executable).with_name("snakemake"))
        self.args, extra = _split_config(snakemake_args)
        self.common = [exe, "--snakefile", str(snakefile), "--configfile", *map(str, files), "--cores", str(cores)]
        # the config's paths are relative to the folder a plain run works in: absolute for the seeds' folders
        self.config = [f"cohort={(self.workdir / self.settings['cohort']).resolve()}"]
        params = self.workdir / self.settings["radiomics"]["params"]
        if params.exists():  # (Snakemake merges a section given on the command line into the config's)
            self.config.append("radiomics=" + json.dumps({"params": str(params.resolve())}))
        self.config += extra

    def demo(self) -> list | None:
        """The command that makes the demo cohort's files in ``workdir`` (None when the demo is off): every
        seed's run then reads the same files."""
        if not self.settings["demo"]["activate"]:
            return None
        return [*self.common, *self.args, "--directory", str(self.workdir), "--until", "make_demo_patient",
                "--config", *self.config]

    def folder(self, seed) -> Path:
        """The working folder of one seed's run."""
        return self.out / f"seed-{int(seed)}"

    def command(self, seed) -> list:
        return [*self.common, *self.args, "--directory", str(self.folder(seed)), "--config", f"seed={int(seed)}",
                *self.config]

    def summary(self, seed) -> Path:
        return self.folder(seed) / layout.cohort("summary.tsv")


def run_seeds(seeds, cores: int = 2, snakemake_args=(), out=layout.SEEDS, configfile="config/config.yaml",
              parallel: bool = False, snakemake: str | None = None, snakefile="Snakefile", workdir=".") -> pd.DataFrame:
    """Run the workflow once per seed, each in its own working folder (:class:`SeedRuns`), so that seeds can
    run at once, on a cluster too, and never overwrite each other's results; then aggregate their summaries
    into ``OUT/summary.tsv``. ``parallel`` starts every seed's run at once (each with ``cores``), else they
    run one after the other."""
    seeds = [int(s) for s in seeds]
    if len(seeds) < 3:
        log.warning("%d seed(s): accuracy is meant as the mean over at least 3", len(seeds))
    runs = SeedRuns(cores, snakemake_args, out, configfile, snakefile, workdir, snakemake)
    demo = runs.demo()
    if demo:
        log.info("the demo cohort: %s", " ".join(demo))
        _check(subprocess.run(demo, cwd=runs.workdir), "the demo cohort")
    procs = {}
    for seed in seeds:
        runs.folder(seed).mkdir(parents=True, exist_ok=True)
        log.info("seed %d in %s: %s", seed, runs.folder(seed), " ".join(runs.command(seed)))
        procs[seed] = subprocess.Popen(runs.command(seed), cwd=runs.workdir)
        if not parallel:
            _check(procs[seed], f"seed {seed}")
    failed = [seed for seed, proc in procs.items() if proc.wait()]  # every run ends before any failure is told
    if failed:
        raise RuntimeError(f"the workflow run for seed {', '.join(map(str, failed))} failed; see its log above "
                           f"and under {runs.out}/seed-S/results/logs")
    table = aggregate({seed: runs.summary(seed) for seed in seeds})
    write_table(table, runs.out / "summary.tsv", float_format="%.4f")
    return table


def _split_config(args) -> tuple[list, list]:
    """(the other arguments, the ``key=value`` items of ``--config``/``-C``) of snakemake arguments: the
    runs give one ``--config`` of their own, to which these are added (a second one would replace it)."""
    rest, items, inside = [], [], False
    for arg in args:
        if arg in ("--config", "-C"):
            inside = True
        elif inside and not arg.startswith("-") and "=" in arg:
            if arg.split("=", 1)[0] in ("seed", "cohort"):
                raise InputError(f"--config {arg}: landmarkflow seeds sets seed and cohort itself "
                                 "(give the cohort in the config file, the seeds with --seeds)")
            items.append(arg)
        else:
            inside = False
            rest.append(arg)
    return rest, items


def _check(proc, what) -> None:
    """Wait for a run; a failed one stops the study with its name."""
    if proc.wait() if isinstance(proc, subprocess.Popen) else proc.returncode:
        raise RuntimeError(f"the workflow run for {what} failed (exit {proc.returncode}); see its log above")


def format_table(table: pd.DataFrame) -> str:
    """The aggregate as the README shows it: mean [min-max] of the runs' means and medians."""
    lines = ["| method | mean (mm) [range over seeds] | median (mm) [range] | seeds |", "| --- | --- | --- | --- |"]
    for r in table.itertuples():
        lines.append(f"| `{r.method}` | {r.mean_mm:.2f} [{r.mean_min:.2f}-{r.mean_max:.2f}] | "
                     f"{r.median_mm:.2f} [{r.median_min:.2f}-{r.median_max:.2f}] | {r.seeds} |")
    return "\n".join(lines)
