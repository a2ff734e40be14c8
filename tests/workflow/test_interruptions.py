"""Issue 31: jobs killed at a random point (SIGTERM and SIGKILL) leave no partial output, and the workflow
reruns them to the result of an uninterrupted run; a second run in the same folder is refused."""

import filecmp
import os
import random
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from interrupt import Killer
from workflow_helpers import SNAKEMAKE, copy_run, run, snakemake_args
from landmarkflow.core import layout
from landmarkflow.io.landmarks import read_landmarks

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: the heavy rules: each job is killed twice, once with each signal, in an order drawn at random
HEAVY = ("train_agents", "train_pin", "register_ants", "register_svf", "extract_radiomics", "build_report")
#: outputs that depend on the agents' training: a training resumed from a checkpoint restarts its replay
#: memory from the current policies, so it is another draw (like another seed): compared by shape only
RESUMED = ("agents", "agent_", "consensus", "radiomics", "cohort")
#: ANTs with ants.deterministic false (the default: multi-threaded sampling) differs a little between runs
#: (about 0.1 mm on the tiny cohort): its landmarks are compared within ANTS_MM
ANTS = ("ants",)
ANTS_MM = 0.5


def _kind(rel):
    names = [part.removesuffix(".csv").removesuffix(".mrk.json") for part in rel.parts]
    if any(n.startswith(RESUMED) for n in names):
        return "resumed"
    return "ants" if any(n.startswith(ANTS) for n in names) else "deterministic"


def _table(path):
    """A results table without its timing columns (seconds differ between runs by nature)."""
    df = pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", dtype={"landmark": str})
    return df.drop(columns=[c for c in df.columns if c == "seconds"])


def _same(got, want, rel):
    """Does a file of the interrupted run match the uninterrupted run's, as its stage allows?"""
    kind = _kind(rel)
    if rel.suffix in (".csv", ".tsv"):
        a, b = _table(got), _table(want)
        if kind == "resumed":
            return list(a.columns) == list(b.columns) and (len(a) > 0) == (len(b) > 0)  # (walks differ in length)
        if kind == "ants":
            xyz = ["x", "y", "z"]
            return (a.drop(columns=xyz, errors="ignore").columns.equals(b.drop(columns=xyz, errors="ignore").columns)
                    and (set(xyz) - set(a.columns) or np.abs(a[xyz].to_numpy() - b[xyz].to_numpy()).max() <= ANTS_MM))
        return a.equals(b)
    if rel.suffix == ".pt" and kind == "deterministic":  # the weights (the file also holds training times)
        import torch

        sa, sb = (torch.load(f, map_location="cpu", weights_only=False)["state_dict"] for f in (got, want))
        return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    if kind == "deterministic":
        return filecmp.cmp(got, want, shallow=False)
    return got.stat().st_size > 0  # ANTs' transforms and images, the agents' models: whole files


def _job_seconds(run_dir, rule):
    """How long the rule's job took in the uninterrupted run (its benchmark file; the report has none)."""
    path = run_dir / layout.benchmark(rule, "tiny01")
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0]) if path.exists() else 4.0


def _files(root):
    """The results files to compare (logs, benchmarks, the report and its figures differ by design: times, dates)."""
    skip = ("logs", "benchmarks")
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).parts[0] not in skip and p.suffix not in (".html", ".png")
                  and p.name != ".snakemake_timestamp")


def test_killed_jobs_leave_no_partial_output_and_rerun_to_the_uninterrupted_result(tiny_run, tmp_path):
    wd = copy_run(tiny_run, tmp_path, agent={"checkpoint_every": 20})
    args = snakemake_args(wd)
    # a run-only setting: changing it reruns nothing
    dry = run(["-n", *args])
    assert "Nothing to be done" in dry.stdout + dry.stderr

    rng = random.Random(31)
    # half the rules get SIGTERM first, the other half SIGKILL first, drawn at random
    plan = {rule: [signal.SIGTERM, signal.SIGKILL][:: 1 if i % 2 else -1]
            for i, rule in enumerate(rng.sample(HEAVY, len(HEAVY)))}
    resume = wd / (layout.agent_models("tiny01") + ".resume.pt")
    # the training is killed after its first checkpoint, then again once it has resumed from it
    train_log = wd / layout.log("train_agents", "tiny01")
    ready = {"train_agents": [resume.exists, lambda: train_log.exists() and "resuming from" in train_log.read_text()]}
    delays = {rule: 0.7 * _job_seconds(tiny_run, rule) for rule in HEAVY}
    out = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(SNAKEMAKE + [*args, "--cores", "2", "--retries", "2", "--keep-going",
                                         "--forcerun", *HEAVY], stdout=out, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES="0"))  # as the uninterrupted run
    killer = Killer(proc, plan, ready, seed=31, max_delay_s=delays)
    killer.start()
    while not killer.seen["train_agents"] and proc.poll() is None:
        time.sleep(0.2)
    second = run([*args, "--cores", "1"], check=False)  # while the first run holds the folder
    assert second.returncode != 0 and "Directory cannot be locked" in second.stdout + second.stderr
    proc.wait(timeout=1800)
    killer.join(timeout=10)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, log[-4000:]
    print("kills (rule, attempt, signal, seconds after the job started):", killer.kills)
    assert sorted(k[:2] for k in killer.kills) == sorted((r, a) for r in HEAVY for a in (0, 1)), killer.kills
    assert {k[2] for k in killer.kills if k[0] == "train_agents"} == {"SIGTERM", "SIGKILL"}
    assert "landmarkflow: stopped by SIGTERM" in log  # a stopped job says so
    assert "resuming from" in (wd / layout.log("train_agents", "tiny01")).read_text()  # and training resumed

    results, reference = wd / "results", tiny_run / "results"
    assert not [p for p in results.rglob("*") if ".part" in p.name or p.name.endswith(".old")]  # no temporary left
    assert not resume.exists()
    assert _files(results) == _files(reference)
    kinds = {}
    for rel in _files(reference):
        assert _same(results / rel, reference / rel, rel), f"{rel} differs from the uninterrupted run ({_kind(rel)})"
        kinds[_kind(rel)] = kinds.get(_kind(rel), 0) + 1
    assert min(kinds.values()) >= 5, kinds  # each kind of comparison was made
    for method in ("agent_baseline", "agent_guided", "agent_seeded", "consensus"):
        got = read_landmarks(wd / layout.landmarks("tiny01", method))
        want = read_landmarks(tiny_run / layout.landmarks("tiny01", method))
        assert got["landmark"].tolist() == want["landmark"].tolist() and got[["x", "y", "z"]].notna().all().all()
    report = (results / "cohort" / "report.html").read_text()
    assert report.rstrip().endswith("</html>")
    dry = run(["-n", *args])
    assert "Nothing to be done" in dry.stdout + dry.stderr
