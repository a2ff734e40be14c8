"""Time and memory of the workflow's heavy jobs, from the benchmark files Snakemake writes
(``layout.benchmark``: wall-clock seconds ``s``, peak resident memory ``max_rss`` in MB, ``cpu_time``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_benchmarks(files) -> pd.DataFrame:
    """One row per job: ``rule``, ``job`` (the rule's folder and the file's stem), ``seconds``, ``max_rss_mb``,
    ``cpu_s`` (NaN where Snakemake did not measure it); the last measurement of each file."""
    rows = []
    for f in files:
        f = Path(f)
        df = pd.read_csv(f, sep="\t")
        if df.empty or "s" not in df:
            continue
        last = df.iloc[-1]
        rows.append({"rule": f.parent.name, "job": f.stem, "seconds": float(last["s"]),
                     "max_rss_mb": float(pd.to_numeric(last.get("max_rss"), errors="coerce")),
                     "cpu_s": float(pd.to_numeric(last.get("cpu_time"), errors="coerce"))})
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "cpu_s"])


def summarise_benchmarks(jobs: pd.DataFrame, by=("rule",), sort: bool = True) -> pd.DataFrame:
    """Per rule (and any other columns in ``by``; sorted, or in their order of appearance): the number of jobs,
    mean, min and max seconds, the peak memory and the mean CPU seconds."""
    g = jobs.groupby(list(by), sort=sort)
    return g.agg(jobs=("seconds", "size"), mean_s=("seconds", "mean"), min_s=("seconds", "min"),
                 max_s=("seconds", "max"), max_rss_mb=("max_rss_mb", "max"), mean_cpu_s=("cpu_s", "mean")).reset_index()
