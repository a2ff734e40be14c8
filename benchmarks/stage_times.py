"""Time and peak memory per workflow stage, from the benchmark files a run leaves (results/benchmarks/<rule>/).

    python benchmarks/stage_times.py RESULTS [--label A] [RESULTS2 --label B ...]

Snakemake writes, for every heavy job, its wall-clock seconds (``s``), peak resident memory (``max_rss``, MB)
and CPU seconds (``cpu_time``). This prints, per results folder and rule, the number of jobs, the mean and
range of the seconds, the peak memory and the CPU seconds, so that two runs (before/after a change, quick
against quality ANTs, CPU against GPU) can be set side by side. Nothing is timed here: run the workflow alone
on the machine to compare, as the figures of jobs that shared the cores are not comparable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def stage_table(results: Path, label: str) -> pd.DataFrame:
    rows = []
    for f in sorted((results / "benchmarks").glob("*/*.tsv")):
        df = pd.read_csv(f, sep="\t")
        if df.empty or "s" not in df:
            continue
        rows.append({"run": label, "rule": f.parent.name, "job": f.stem, "s": float(df["s"].iloc[-1]),
                     "max_rss_mb": float(pd.to_numeric(df.get("max_rss"), errors="coerce").iloc[-1]),
                     "cpu_s": float(pd.to_numeric(df.get("cpu_time"), errors="coerce").iloc[-1])})
    return pd.DataFrame(rows)


def summarise(jobs: pd.DataFrame) -> pd.DataFrame:
    g = jobs.groupby(["run", "rule"], sort=False)
    return pd.DataFrame({"jobs": g.size(), "mean_s": g["s"].mean(), "min_s": g["s"].min(), "max_s": g["s"].max(),
                         "peak_rss_mb": g["max_rss_mb"].max(), "mean_cpu_s": g["cpu_s"].mean()}).reset_index()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results folders (each with a benchmarks/ folder)")
    p.add_argument("--label", action="append", help="a name per results folder, in order (default: the path)")
    args = p.parse_args(argv)
    labels = args.label or []
    if len(labels) > len(args.results):
        p.error("more --label than results folders")
    parts = []
    for i, folder in enumerate(args.results):
        if not (folder / "benchmarks").is_dir():
            print(f"error: {folder}/benchmarks: no such folder (expected a workflow's results folder)", file=sys.stderr)
            return 2
        parts.append(stage_table(folder, labels[i] if i < len(labels) else str(folder)))
    jobs = pd.concat(parts, ignore_index=True)
    if jobs.empty:
        print("error: no benchmark files found", file=sys.stderr)
        return 2
    table = summarise(jobs)
    print("| run | rule | jobs | mean s [range] | peak RSS (MB) | mean CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in table.itertuples():
        print(f"| {r.run} | {r.rule} | {r.jobs} | {r.mean_s:.0f} [{r.min_s:.0f}-{r.max_s:.0f}] | {r.peak_rss_mb:.0f} | "
              f"{r.mean_cpu_s:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
