"""The workflow's files without running Snakemake: the committed demo manifest, the conda environments, the rules."""

from pathlib import Path

import pandas as pd
import yaml

from testdata import ROOT
from landmarkflow.demo import synthetic


def test_default_manifest_matches_the_demo_generator():
    for name in ("cohort.tsv", "smoke.tsv"):  # the demo's and the smoke run's (config/smoke.yaml names it)
        committed = pd.read_csv(ROOT / "config" / name, sep="\t", dtype=str)
        patients = list(dict.fromkeys(committed["patient"]))
        expected = synthetic.manifest_rows(patients, ROOT / "resources" / "demo", ROOT / "config")
        pd.testing.assert_frame_equal(committed, expected)
    assert yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["cohort"] == "config/smoke.tsv"

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

def _third_party_imports(script: Path) -> set[str]:
    """The distributions a rule's script needs: every third-party import of the script and of every module of
    the package it reaches, at any depth and in functions too (a lazy import runs when the job calls it)."""
    import ast
    import sys

    from test_packaging import DISTRIBUTIONS

    src = ROOT / "src"
    seen, found = set(), set()

    def module_file(name):
        path = src / Path(*name.split("."))
        return path / "__init__.py" if (path / "__init__.py").exists() else path.with_suffix(".py")

    def visit(path):
        package = list(path.relative_to(src).parts[:-1]) if path.is_relative_to(src) else []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module
                names = [base] + [f"{base}.{a.name}" for a in node.names] if base else []
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "landmarkflow":
                    if (f := module_file(name)).exists() and f not in seen:
                        seen.add(f)
                        visit(f)
                elif top not in sys.stdlib_module_names and top != "snakemake":
                    found.add(DISTRIBUTIONS.get(top, top).lower())

    visit(script)
    return found


#: imports an environment may lack, with the reason: the report reads the PyTorch jobs' device records, and
#: core.device imports torch only in the functions that run on those jobs
NOT_NEEDED = {("build_report", "torch")}


def test_every_rules_environment_holds_what_its_script_imports():
    """Issue 30: each conda environment must hold every distribution its rules' scripts import (the
    environments had no PyYAML, which the config's schema needs)."""
    import re

    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?:rule|checkpoint) ", smk.read_text(), flags=re.M)[1:]:
            rule = block.split(":")[0]
            env = ROOT / re.search(r'conda:\s*"\.\./\.\./(envs/[\w.]+)"', block).group(1)
            script = ROOT / re.search(r'script:\s*"\.\./\.\./(scripts/\w+\.py)"', block).group(1)
            spec = yaml.safe_load(env.read_text())
            have = {r.split("==")[0].lower() for r in next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))}
            deploy = env.with_name(env.name.replace(".yaml", ".post-deploy.sh"))
            if deploy.exists():
                have |= {r.split("==")[0].lower() for r in re.findall(r"pip install [^\n]*?([\w-]+==[\w.]+)", deploy.read_text())}
            missing = {d for d in _third_party_imports(script) if d not in have and (rule, d) not in NOT_NEEDED}
            assert not missing, f"{env.name} lacks {sorted(missing)}, which rule {rule} imports"


def test_pyradiomics_is_built_by_the_post_deployment_script_as_the_makefile_builds_it():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    spec = yaml.safe_load((ROOT / "envs" / "radiomics.yaml").read_text())
    pip = {r.split("==")[0] for r in next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))}
    assert {"numpy", "setuptools", "wheel", "versioneer"} <= pip and "pyradiomics" not in pip
    script = (ROOT / "envs" / "radiomics.post-deploy.sh").read_text()
    assert f"pip install --no-build-isolation pyradiomics=={pins['pyradiomics']}" in script


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


def test_every_benchmark_script_starts_and_every_name_it_imports_exists():
    """The benchmark scripts import the library as it is now (a moved name fails here, not in a study): each starts
    (``--help``), and every import it makes, at the top or inside a function or subcommand that ``--help`` never
    reaches, names a module that imports and a name that module has."""
    import ast
    import importlib
    import subprocess
    import sys

    for script in sorted((ROOT / "benchmarks").glob("*.py")) + [ROOT / "docs" / "make_images.py"]:
        res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
        assert res.returncode == 0, f"{script.name}: {res.stderr[-1500:]}"
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):  # a submodule is imported by the statement itself
                        importlib.import_module(f"{node.module}.{alias.name}")
