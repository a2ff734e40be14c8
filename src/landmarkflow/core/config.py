"""The configuration: its schema is the one place where every setting has its default.

``config.schema.yaml`` (beside this module; ``workflow/schemas/config.schema.yaml`` is a link to it) gives
every key a type, a description and a default. The workflow validates its config against it with
Snakemake, which fills in the defaults; the library's settings classes take their defaults from it
(:func:`schema_field`), and :func:`complete` fills a config the same way outside Snakemake. Nothing else
spells out a default.

Which settings of the ``agent`` and ``pin`` sections train, and which only detect: a change to a detection
setting must rerun the redetection with the new value and leave the trained networks alone, so the
workflow gives the training jobs the training settings only and the redetection jobs the detection
settings (:func:`split_settings`), and the redetection applies them over what a model was trained with.
No torch here: the workflow imports this when it starts.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import field
from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("config.schema.yaml")

#: used at test time only (the agents' redetection)
AGENT_DETECTION_KEYS = ("n_starts", "max_test_steps", "max_shift_mm", "guide_test", "test_smooth_mm", "seeded_box_mm",
                        "seeded_max_shift_mm", "fine_starts", "fine_max_shift_mm", "centre", "match_intensities")
#: used at test time only (PIN's localisation)
PIN_DETECTION_KEYS = ("n_starts", "iterations", "max_shift_mm")
#: how a job runs, not what it gives: kept out of the jobs' parameters, so that changing them reruns nothing
#: (the jobs read them from the config)
RUN_ONLY_KEYS = ("checkpoint_every",)


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_FILE.read_text())


def properties(section: str | None = None) -> dict:
    """The schema's properties of a config section (``None``: the top level)."""
    props = schema()["properties"]
    return props if section is None else props[section]["properties"]


def default(section: str | None, key: str):
    """A copy of the schema's default of ``section.key`` (``section`` None: a top-level key)."""
    prop = properties(section)[key]
    if "default" not in prop:
        raise KeyError(f"config schema: {section + '.' if section else ''}{key} has no default")
    return copy.deepcopy(prop["default"])


def schema_field(section: str | None, key: str):
    """A dataclass field whose default is the schema's (a fresh copy for lists and dicts)."""
    value = default(section, key)
    if isinstance(value, (list, dict)):
        return field(default_factory=lambda: default(section, key))
    return field(default=value)


def complete(config: dict, schema_part: dict | None = None) -> dict:
    """``config`` (changed in place and returned) with every missing key set to the schema's default, nested
    sections included: the rule Snakemake's ``validate(config, schema)`` applies."""
    schema_part = schema() if schema_part is None else schema_part
    for key, prop in schema_part.get("properties", {}).items():
        if key not in config and "default" in prop:
            config[key] = copy.deepcopy(prop["default"])
        if isinstance(config.get(key), dict) and "properties" in prop:
            complete(config[key], prop)
    return config


def check_svf(levels, iterations, window) -> None:
    """What the schema cannot say about the second registration's settings (ValueError naming the keys)."""
    if len(levels) != len(iterations) or not levels:
        raise ValueError(f"svf.levels {list(levels)} and svf.iterations {list(iterations)}: expected lists of the "
                         "same, non-zero length (one count of iterations per level)")
    if int(window) < 1 or int(window) % 2 == 0:
        raise ValueError(f"svf.window {window}: expected an odd number of voxels")


def check_relations(config: dict) -> None:
    """Relations between settings of a complete config that the schema cannot express; a ValueError names the keys
    and what is expected (the workflow checks this when it starts, before any job)."""
    svf = config["svf"]
    if svf["activate"]:
        check_svf(svf["levels"], svf["iterations"], svf["window"])
    cons = config["consensus"]
    if cons["activate"] and cons["refine"] and cons["registration"] != "ants_syn":
        raise ValueError(f"consensus.refine: true needs consensus.registration: ants_syn, got "
                         f"{cons['registration']!r} (the refinement, agent_seeded, starts at ANTs SyN's landmark); "
                         "set consensus.refine: false")


def result_settings(config: dict) -> dict:
    """The settings that decide the results (what the report shows of the config): the sections of the
    stages that run, without :data:`RUN_ONLY_KEYS`."""
    return {k: ({kk: vv for kk, vv in v.items() if kk not in RUN_ONLY_KEYS} if isinstance(v, dict) else v)
            for k, v in config.items() if not (isinstance(v, dict) and v.get("activate") is False)}


def split_settings(settings: dict, detection_keys) -> tuple[dict, dict]:
    """(training settings, detection settings) of a config section, without :data:`RUN_ONLY_KEYS`."""
    train = {k: v for k, v in settings.items() if k not in detection_keys and k not in RUN_ONLY_KEYS}
    return train, {k: v for k, v in settings.items() if k in detection_keys}


def _cell(value) -> str:
    import json

    text = json.dumps(value) if not isinstance(value, str) else value
    return f"`{text}`".replace("|", "\\|")


def reference_table() -> str:
    """Every config key with its default and description, as a Markdown table made from the schema (the key
    reference of ``config/README.md``, which a test keeps equal to this)."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]

    def walk(part: dict, prefix: str):
        for key, prop in part.get("properties", {}).items():
            name = f"{prefix}{key}"
            if "properties" in prop:
                walk(prop, name + ".")
                continue
            text = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
            value = _cell(prop["default"]) if "default" in prop else "required"
            rows.append(f"| `{name}` | {value} | {text} |")

    walk(schema(), "")
    return "\n".join(rows) + "\n"
