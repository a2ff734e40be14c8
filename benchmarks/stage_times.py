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

from landmarkflow.evaluate.benchmarks import read_benchmarks, summarise_benchmarks


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
        jobs = read_benchmarks(sorted((folder / "benchmarks").glob("*/*.tsv")))
        parts.append(jobs.assign(run=labels[i] if i < len(labels) else str(folder)))
    jobs = pd.concat(parts, ignore_index=True)
    if jobs.empty:
        print("error: no benchmark files found", file=sys.stderr)
        return 2
    table = summarise_benchmarks(jobs, by=("run", "rule"), sort=False)
    print("| run | rule | jobs | mean s [range] | peak RSS (MB) | mean CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in table.itertuples():
        print(f"| {r.run} | {r.rule} | {r.jobs} | {r.mean_s:.0f} [{r.min_s:.0f}-{r.max_s:.0f}] | {r.max_rss_mb:.0f} | "
              f"{r.mean_cpu_s:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
