"""The workflow's files without running Snakemake: the committed demo manifest, the conda environments, the rules."""

import pandas as pd
import yaml

from testdata import ROOT
from landmarkflow.demo import synthetic


def test_default_manifest_matches_the_demo_generator():
    committed = pd.read_csv(ROOT / "config" / "cohort.tsv", sep="\t", dtype=str)
    patients = list(dict.fromkeys(committed["patient"]))
    expected = synthetic.manifest_rows(patients, ROOT / "resources" / "demo", ROOT / "config")
    pd.testing.assert_frame_equal(committed, expected)

def test_envs_mirror_the_constraints():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==")
            pins[name.strip().lower()] = ver.strip()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        for req in pip:
            name, ver = req.split("==")
            assert pins.get(name.lower()) == ver, f"{env.name}: {req} differs from constraints.txt ({pins.get(name.lower())})"

def test_rules_declare_log_and_env():
    import re

    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        assert "run:" not in text, f"{smk.name}: no run: blocks, call a script"
        blocks = re.split(r"^(?:rule|checkpoint) ", text, flags=re.M)[1:]
        for block in blocks:
            name = block.split(":")[0]
            for key in ("log:", "conda:", "script:", "output:"):
                assert key in block, f"{smk.name}: rule {name} lacks {key}"


def test_every_benchmark_script_starts():
    """The benchmark scripts import the library as it is now (a moved name fails here, not in a study)."""
    import subprocess
    import sys

    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
        assert res.returncode == 0, f"{script.name}: {res.stderr[-1500:]}"
