"""How the workflow's start grows with the cohort: dry-run time and peak memory for 10, 50 and 200 patients.

    python benchmarks/cohort_scale.py WORKDIR [--sizes 10,50,200] [--cores 2] [--no-validate]
                                     [--workflow DIR --label NAME ...]

Every patient of a cohort of N is a folder of symbolic links to one demo patient (made once in
WORKDIR/demo). Per N, in WORKDIR/n<N>/ with the default config (demo off, the cohort named there):

1. ``snakemake -n`` before any job ran: parsing, manifest checks, the whole plan;
2. the validation jobs (``--until validate_cohort``): one job per patient, timed as a whole (when
   ``validate_patient`` was a checkpoint, Snakemake re-planned after each of them);
3. ``snakemake -n`` again, after validation.

It prints, per N and step, the wall-clock seconds, the seconds per patient and the peak resident memory
of the Snakemake process (polled every 50 ms), and the growth between sizes: a factor per patient near 1
means linear growth. Run it alone on the machine: the figures of runs that share the cores are not
comparable. Nothing here is a test. ``--workflow`` (repeatable, with ``--label``) times other checkouts
of the workflow (a ``git worktree`` of the old code) in the same run, one after the other, each in its
own folders.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from landmarkflow.core.files import write_table  # noqa: E402
from landmarkflow.demo import synthetic  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def make_cohort(workdir: Path, n: int, demo: Path, label: str = "") -> Path:
    """A working folder with a manifest of ``n`` patients, each a folder of links to the demo patient."""
    wd = workdir / f"{label + '-' if label else ''}n{n}"
    (wd / "config").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        patient = f"p{i:04d}"
        folder = wd / "data" / patient
        folder.mkdir(parents=True, exist_ok=True)
        for r in synthetic.manifest_rows(["demo01"], demo, wd / "config").itertuples():
            src = (wd / "config" / r.path).resolve()
            link = folder / src.name
            if not link.exists():
                link.symlink_to(src)
            rows.append({"patient": patient, "timepoint": r.timepoint, "kind": r.kind, "name": r.name,
                         "path": os.path.relpath(link, wd / "config")})
    write_table(pd.DataFrame(rows), wd / "config" / "cohort.tsv")
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["demo"]["activate"] = False
    cfg["cohort"] = "config/cohort.tsv"
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return wd


def timed(cmd) -> tuple[float, float, str]:
    """(seconds, peak resident MB of the process, its output's last line) of a command."""
    import tempfile

    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a long output cannot block the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        ps, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        log.seek(0)
        out = log.read()
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{out[-3000:]}")
    last = [ln for ln in out.splitlines() if ln.strip()]
    return seconds, peak / 2**20, last[-1] if last else ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", type=Path)
    p.add_argument("--sizes", default="10,50,200")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--no-validate", action="store_true", help="only the dry run before validation")
    p.add_argument("--workflow", type=Path, action="append", help="a checkout of the workflow (default this one)")
    p.add_argument("--label", action="append", help="a name per --workflow")
    args = p.parse_args(argv)
    workflows = args.workflow or [ROOT]
    labels = args.label or ([""] if not args.workflow else [w.name for w in workflows])
    if len(labels) != len(workflows):
        p.error("give one --label per --workflow")
    demo = args.workdir / "demo"
    if not (demo / "demo01").exists():
        synthetic.make_patient("demo01", demo, seed=42)
    rows = []
    for (workflow, label), n in ((w, n) for w in zip(workflows, labels) for n in (int(s) for s in args.sizes.split(","))):
        wd = make_cohort(args.workdir, n, demo, label)
        base = [SNAKEMAKE, "-s", str(Path(workflow).resolve() / "Snakefile"), "-d", str(wd),
                "--configfile", str(wd / "config" / "config.yaml")]
        steps = [("dry run before validation", base + ["-n", "--quiet", "rules"])]
        if not args.no_validate:
            steps += [("validation jobs", base + ["--cores", str(args.cores), "--until", "validate_cohort", "--quiet"]),
                      ("dry run after validation", base + ["-n", "--quiet", "rules"])]
        for step, cmd in steps:
            seconds, mb, _ = timed(cmd)
            rows.append({"workflow": label, "patients": n, "step": step, "seconds": seconds, "s_per_patient": seconds / n,
                         "peak_mb": mb})
            print(f"{label:>8s} {n:4d} patients  {step:26s} {seconds:7.1f} s  {seconds / n:6.2f} s/patient  {mb:6.0f} MB",
                  flush=True)
    table = pd.DataFrame(rows)
    print("\ngrowth (seconds per patient, relative to the smallest cohort; 1 = linear):")
    for (label, step), g in table.groupby(["workflow", "step"], sort=False):
        g = g.sort_values("patients")
        first = g.iloc[0]
        print(f"  {label:>8s} {step:26s} " + "  ".join(f"N={r.patients}: {r.s_per_patient / first.s_per_patient:.2f}x, "
                                           f"{r.peak_mb:.0f} MB" for r in g.itertuples()))
    write_table(table, args.workdir / "cohort_scale.tsv", float_format="%.3f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
