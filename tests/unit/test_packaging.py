"""pyproject.toml declares what the library imports, and nothing else; one version string."""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: import name -> distribution name, for the third-party packages the library may use
DISTRIBUTIONS = {"numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "nibabel": "nibabel", "SimpleITK": "SimpleITK",
                 "nilearn": "nilearn", "yaml": "pyyaml", "matplotlib": "matplotlib", "torch": "torch", "ants": "antspyx",
                 "radiomics": "pyradiomics", "jinja2": "jinja2", "markupsafe": "markupsafe", "bids": "pybids"}


def _imports(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "landmarkflow"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]


def test_dependencies_are_what_the_library_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    imported = _imports(ROOT / "src" / "landmarkflow")
    unknown = imported - set(DISTRIBUTIONS)
    assert not unknown, f"the library imports {unknown}: add them to pyproject.toml and to DISTRIBUTIONS here"
    extras = project["optional-dependencies"]
    declared = {_name(r) for r in project["dependencies"]} | {_name(r) for key in ("agents", "ants", "radiomics", "bids") for r in extras[key]}
    assert declared == {DISTRIBUTIONS[n] for n in imported}
    # the controller is not a dependency of the library
    assert not {_name(r) for r in project["dependencies"]} & {"snakemake", "snakemake-executor-plugin-slurm", "jsonschema"}
    assert {"snakemake", "snakemake-executor-plugin-slurm-jobstep"} <= {_name(r) for r in extras["workflow"]}
    assert {_name(r) for r in extras["slurm"]} == {"snakemake-executor-plugin-slurm"}


def test_the_slurm_plugin_is_the_pinned_one_and_has_what_it_needs_but_the_numpy_floor():
    """Issue 30: the SLURM executor plugin at its newest version, installed without its dependencies; every
    requirement it declares is met, except its numpy floor, which it does not need (it uses np.inf only)."""
    import importlib
    import importlib.metadata as md

    from packaging.requirements import Requirement

    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert md.version("snakemake-executor-plugin-slurm") == pins["snakemake-executor-plugin-slurm"]
    unmet = []
    for text in md.requires("snakemake-executor-plugin-slurm") or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            unmet.append(f"{req} (missing)")
            continue
        if not req.specifier.contains(have, prereleases=True) and req.name != "numpy":
            unmet.append(f"{req} (have {have})")
    assert not unmet, unmet
    plugin = (Path(md.distribution("snakemake-executor-plugin-slurm").locate_file("snakemake_executor_plugin_slurm")))
    uses = {m for f in plugin.rglob("*.py") for m in re.findall(r"\bnp\.(\w+)", f.read_text())}
    assert uses <= {"inf", "nan", "isnan", "isinf"}, uses  # what a numpy below its floor provides alike
    importlib.import_module("snakemake_executor_plugin_slurm")  # it imports with this numpy


def test_one_version_string():
    import importlib.metadata

    import landmarkflow

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("landmarkflow") == landmarkflow.__version__
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License") and project["license"] == "Apache-2.0"


def test_the_citation_file_states_the_version_and_licence():
    import yaml

    import landmarkflow

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == landmarkflow.__version__
    assert cff["license"] == "Apache-2.0" and cff["title"].startswith("landmarkflow")
