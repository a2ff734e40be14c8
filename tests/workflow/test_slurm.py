"""The SLURM profile against a real SLURM: a one-node cluster on localhost (tests/workflow/minislurm.py).

The workflow runs through ``snakemake --profile profiles/slurm`` as a user would run it, with the
profile unchanged: its account, its ``cpu``/``gpu`` partitions (the test cluster has both) and the GPU
request of ``train_agents`` (the node has one fake GPU). Only what a cluster without accounting needs
is added on the command line: ``--slurm-status-command squeue``, a short first status check, and
``--max-threads`` for a node with few CPUs.

Skipped, with the reason, where the daemons cannot be started (not root, no apt to install SLURM).
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile

from pathlib import Path

import pandas as pd
import pytest
import yaml

import minislurm
from workflow_helpers import ROOT, SNAKEMAKE, TINY, workdir

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts munged, slurmctld and slurmd itself and needs root")
    try:
        minislurm.install()
    except minislurm.Unavailable as err:
        pytest.skip(f"no SLURM here: {err}")
    folder = Path(tempfile.mkdtemp(prefix="landmarkflow-slurm-"))  # not under pytest's 0700 folders: munge must reach it
    cluster = minislurm.MiniSlurm(folder)
    cluster.start()
    yield cluster
    cluster.stop()
    assert all(p.poll() is not None for p in cluster.procs.values())
    shutil.rmtree(folder, ignore_errors=True)


def slurm_snakemake(cluster, wd, timeout=1800):
    """Run the workflow in ``wd`` through the SLURM profile; returns (exit code, output)."""
    cmd = SNAKEMAKE + [
        "-s", str(ROOT / "Snakefile"),
        "--profile", str(ROOT / "profiles" / "slurm"),
        "--configfile", str(wd / "config" / "config.yaml"),
        "--max-threads", str(cluster.cpus),
        "--slurm-status-command", "squeue",  # the test cluster has no accounting database for sacct
        "--slurm-init-seconds-before-status-checks", "2",
    ]
    env = dict(cluster.env, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=wd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the plugin ignores SIGTERM; SIGINT makes it cancel its jobs
        out, _ = proc.communicate(timeout=120)
        raise AssertionError(f"the SLURM run took more than {timeout} s:\n{out[-4000:]}\n{cluster.tail('slurmctld')}")
    return proc.returncode, out


def jobs(cluster):
    """Every job the cluster has seen, as dicts of `scontrol show job` fields."""
    res = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, env=cluster.env, check=True)
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in res.stdout.splitlines() if line.strip()]


def files_under(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_slurm_run_matches_the_local_run(cluster, tiny_run, tmp_path):
    local = tiny_run  # the same cohort and config, run with --cores 2
    wd = workdir(tmp_path, ["tiny01"], overrides=TINY)
    assert (wd / "config" / "config.yaml").read_text() == (local / "config" / "config.yaml").read_text()
    code, out = slurm_snakemake(cluster, wd)
    assert code == 0, out[-5000:]

    # complete: every output of the local run, plus the SLURM job logs
    slurm_logs = {f for f in files_under(wd / "results") if f.startswith("logs/slurm/")}
    assert files_under(wd / "results") - slurm_logs == files_under(local / "results")
    assert any(f.startswith("logs/slurm/rule_train_agents/tiny01") and f.endswith(".log") for f in slurm_logs), sorted(slurm_logs)

    # the same seed gives the same landmarks (seeded CPU training, deterministic preprocessing);
    # only the timing column differs
    for name in ("agent_guided", "agent_baseline", "pin", "identity"):
        got = pd.read_csv(wd / "results" / "tiny01" / "landmarks" / f"{name}.csv").drop(columns="seconds", errors="ignore")
        want = pd.read_csv(local / "results" / "tiny01" / "landmarks" / f"{name}.csv").drop(columns="seconds", errors="ignore")
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
    for ends in ("agents/guided_endpoints.tsv", "agents/baseline_endpoints.tsv", "pin/endpoints.tsv"):
        got = pd.read_csv(wd / "results" / "tiny01" / ends, sep="\t")
        want = pd.read_csv(local / "results" / "tiny01" / ends, sep="\t")
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=ends)

    # the GPU requests reached SLURM intact: one GPU job per patient trains all its agents (3 landmarks x
    # 2 variants, and a fine agent per landmark), one its PINs; they went to the gpu partition with one GPU each; nothing else asked
    # for a GPU; every job got at most the node's CPUs
    seen = jobs(cluster)
    rules = [re.match(r"rule_(.+?)(?:_wildcards_|$)", j.get("Comment", "")).group(1) for j in seen]
    assert rules.count("train_agents") == 1 and rules.count("train_pin") == 1 and rules.count("register_svf") == 1, rules
    assert sum(1 for j in seen if "gpu:1" in j.get("TresPerJob", "")) == 3, seen
    trained = sorted(p.name for p in (wd / "results" / "tiny01" / "agents" / "trained").glob("*.pt"))
    assert trained == sorted(f"{lm}_{v}.pt" for lm in "123" for v in ("baseline", "fine", "guided")), trained
    for rule, job in zip(rules, seen):
        on_gpu = rule in ("train_agents", "train_pin", "register_svf")
        assert job["JobState"] == "COMPLETED", job
        assert job["Partition"] == ("gpu" if on_gpu else "cpu"), job
        assert ("gpu:1" in job.get("TresPerJob", "")) == on_gpu, job
        assert int(job["NumCPUs"]) <= cluster.cpus
    text = (wd / "results" / "logs" / "train_agents" / "tiny01.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=0" in text and "device cpu" in text and "6 agents" in text, text
    # SLURM set it: the submitting Snakemake did not have it (the local tiny run sets it itself, as a GPU job would)
    assert "CUDA_VISIBLE_DEVICES" not in cluster.env or cluster.env["CUDA_VISIBLE_DEVICES"] != "0"


def test_failed_job_names_its_log(cluster, small_cohort, tmp_path):
    manifest, folder = small_cohort
    (folder / "p1" / "post_t1.nii.gz").write_bytes(b"this is not a NIfTI file")
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(cohort=str(manifest), reference_modality=["t1"])
    cfg["demo"]["activate"] = False
    cfg["agent"]["modalities"] = []  # this cohort has T1 only (the demo config names t1ce and flair)
    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, out = slurm_snakemake(cluster, wd, timeout=600)
    assert code != 0
    # the error block of the failed job names the rule's log and the SLURM job's log
    errors = re.findall(r"Error in rule validate_patient:.*?\n\s+log: (.*?) \(check log", out, re.S)
    named = [p for e in errors for p in e.split(", ") if "/results/logs/slurm/rule_validate_patient/" in p]
    assert named, out[-4000:]
    text = Path(named[0]).read_text()
    assert "post_t1.nii.gz" in text, text[-2000:]  # the job's log says which file is bad
