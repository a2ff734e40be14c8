"""The package's structure: layers that import downwards only, no import circle, no borrowed private names,
and one owner per contract (the method catalogue against the config schema, the settings classes against
the schema's defaults)."""

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from landmarkflow.core import config, methods

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "landmarkflow"
#: the layers, lowest first: a module may import its own layer and those below it
LAYERS = ["core", "imaging", "io", "cohort", "registration", "preprocess", "detect", "evaluate", "present", "demo", "cli"]


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(SRC).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules) -> set[tuple[str, tuple]]:
    """(imported module, imported names) of every import in a module, function-level ones included."""
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = tuple(a.name for a in node.names)
            for n in names:  # "from . import io" imports a module
                if f"{target}.{n}" in modules:
                    out.add((f"{target}.{n}", ()))
            if target in modules:
                out.add((target, names))
        elif isinstance(node, ast.Import):
            out |= {(a.name, ()) for a in node.names if a.name in modules}
    return out


def _graph():
    modules = _modules()
    return {m: {t for t, _ in _imports(m, f, modules) if t != m and not m.startswith(t + ".")} for m, f in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else len(LAYERS)  # the package's __init__ sits on top


def test_no_import_circle():
    graph = _graph()
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == [], f"modules that import each other in a circle: {circles}"


def test_every_subpackage_is_a_layer_and_imports_go_downwards():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert subpackages | {"cli"} == set(LAYERS), "a new subpackage needs its place in LAYERS"
    upward = [(m, t) for m, targets in _graph().items() for t in targets
              if t.startswith("landmarkflow.") and _layer(t) > _layer(m)]
    assert upward == [], f"imports of a higher layer: {upward}"


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    borrowed = [(m, t, n) for m, f in modules.items() for t, names in _imports(m, f, modules) for n in names
                if n.startswith("_") and not n.startswith("__") and t != m]
    assert borrowed == [], borrowed


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter: an import that only works after another module was loaded fails here."""
    names = sorted(_modules())
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    for name in names:
        res = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, cwd=SRC)
        assert res.returncode == 0, f"{name}: {res.stderr[-1500:]}"


# ----------------------------------------------------------------------------- one owner per contract
def test_schema_enums_are_the_catalogues():
    cons = config.properties("consensus")
    assert cons["registration"]["enum"] == list(methods.REGISTRATIONS)
    assert cons["second"]["enum"] == [None, *methods.REGISTRATIONS] and cons["second"]["default"] in methods.REGISTRATIONS
    assert cons["methods"]["items"]["enum"] == list(methods.VOTERS)
    assert set(cons["methods"]["default"]) <= set(methods.VOTERS)
    assert set(methods.VOTERS) | set(methods.REGISTRATIONS) <= set(methods.NAMES)


def test_catalogue_names_are_unique_and_in_the_run_order():
    assert len(methods.NAMES) == len(set(methods.NAMES)) == len(methods.CATALOGUE)
    assert set(methods.RUN_ORDER) == set(methods.NAMES)
    assert methods.NAMES[0] == "consensus"  # the recommended landmark is shown first


def test_the_guided_agent_and_the_seeded_one_need_what_the_catalogue_says():
    everything = {"ants", "pin", "consensus"}
    assert "agent_guided" in methods.patient_methods(everything, has_resection=True)
    assert "agent_guided" not in methods.patient_methods(everything, has_resection=False)
    assert methods.agent_variants(False) == ("baseline",) and methods.agent_variants(True) == ("baseline", "guided")
    without_ants = methods.patient_methods({"pin", "consensus"}, has_resection=True)
    assert "agent_seeded" not in without_ants and "ants_syn" not in without_ants and "pin" in without_ants
    assert "pin" not in methods.patient_methods({"ants"}, has_resection=True)


def _settings_classes():
    from landmarkflow.detect.agent.train import AgentConfig
    from landmarkflow.detect.consensus import ConsensusConfig
    from landmarkflow.detect.pin import PinConfig
    from landmarkflow.preprocess.pipeline import Settings

    # (class, config section, the section's keys that belong to the workflow, not to the class)
    return [(AgentConfig, "agent", {"device", "checkpoint_every"}), (PinConfig, "pin", {"activate", "device"}),
            (ConsensusConfig, "consensus", {"activate"}), (Settings, "preprocess", set())]


@pytest.mark.parametrize("cls, section, workflow_keys", _settings_classes(), ids=lambda x: getattr(x, "__name__", x))
def test_settings_classes_take_every_default_from_the_schema(cls, section, workflow_keys):
    props = config.properties(section)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = {"seed", "reference_modality"} if section == "preprocess" else set()  # top-level keys
    assert set(fields) == set(props) - workflow_keys | extra
    instance = cls()
    for name in fields:
        expected = config.default(None if name in extra else section, name)
        assert getattr(instance, name) == expected, f"{section}.{name}"


def test_complete_fills_nested_defaults_as_snakemake_does():
    cfg = config.complete({"cohort": "c.tsv", "agent": {"updates": 5}})
    assert cfg["agent"]["updates"] == 5 and cfg["agent"]["patch"] == config.default("agent", "patch")
    assert cfg["pin"]["activate"] is False and cfg["ants"]["preset"] == config.default("ants", "preset")


def test_config_readme_lists_every_key_with_the_schema_default():
    """config/README.md's key table is the schema's (landmarkflow config-keys): a default changed in the schema and
    not in the user's documentation fails here."""
    text = (SRC.parent / "config" / "README.md").read_text()
    begin, end = "<!-- config-keys: begin -->\n", "<!-- config-keys: end -->"
    assert begin in text and end in text
    assert text.split(begin, 1)[1].split(end, 1)[0] == config.reference_table()


def test_reference_table_has_one_row_per_leaf_key():
    rows = config.reference_table().splitlines()[2:]
    keys = [row.split("|")[1].strip().strip("`") for row in rows]
    assert len(keys) == len(set(keys))
    assert "agent.fine_factor" in keys and "svf.consistency_mm" in keys and "cohort" in keys
    assert f"`{config.default('agent', 'updates')}`" in rows[keys.index("agent.updates")]


def test_relations_the_schema_cannot_express_are_checked_with_the_keys_named():
    config.check_relations(config.complete({}))  # the defaults are consistent
    bad_svf = config.complete({"svf": {"levels": [4, 2, 1]}})  # a third level without its iterations
    with pytest.raises(ValueError, match=r"svf.levels \[4, 2, 1\] and svf.iterations \[100, 60\]"):
        config.check_relations(bad_svf)
    with pytest.raises(ValueError, match="svf.window 6"):
        config.check_relations(config.complete({"svf": {"window": 6}}))
    config.check_relations(config.complete({"svf": {"activate": False, "window": 6}}))  # not run: not checked
    with pytest.raises(ValueError, match="consensus.refine: true needs consensus.registration: ants_syn, got 'svf'"):
        config.check_relations(config.complete({"consensus": {"registration": "svf", "second": "ants_syn", "refine": True}}))
    config.check_relations(config.complete({"consensus": {"registration": "svf", "second": "ants_syn"}}))
