"""Helpers of the workflow tests: run Snakemake, make a working folder with a demo cohort."""

import os
import shutil
import subprocess
import sys

from pathlib import Path

import yaml

from landmarkflow.demo import synthetic
from landmarkflow.core.files import write_table

ROOT = Path(__file__).resolve().parents[2]

SNAKEMAKE = [sys.executable, "-m", "snakemake"]

#: a tiny budget, the smoke run's (config/smoke.yaml): the whole workflow in a few minutes on 2 cores (the
#: smoke config's own manifest aside: each test writes its own)
TINY = {key: value for key, value in yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text()).items() if key != "cohort"}


#: Debian's Chromium (make test installs it as root), or None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_flags(profile, window="1280,2400") -> list:
    """Headless Chromium on this closed network (no background connections), a fresh profile, 10 s of virtual time."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
            f"--window-size={window}"]


def run(args, cwd=ROOT, check=True, env=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    res = subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def workdir(tmp_path, patients, seed=3, overrides=None):
    """A working folder with config/config.yaml and a manifest of demo patients (made by the workflow)."""
    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True)
    write_table(synthetic.manifest_rows(patients, wd / "resources" / "demo", wd / "config"), wd / "config" / "cohort.tsv")
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["seed"] = seed
    for key, val in (overrides or {}).items():
        cfg.setdefault(key, {}).update(val)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return wd


def copy_run(run_dir, tmp_path, **config_changes):
    """A copy of a finished run (outputs, their dates and Snakemake's records), its config changed."""
    import shutil

    wd = tmp_path / "copy"
    shutil.copytree(run_dir, wd, symlinks=True)
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    for section, values in config_changes.items():
        cfg.setdefault(section, {}).update(values)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return wd


def snakemake_args(wd):
    """The arguments of a run of the project's workflow in the working folder ``wd``."""
    return ["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml")]
