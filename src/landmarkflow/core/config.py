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
import re
from dataclasses import field
from pathlib import Path

from .errors import InputError

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


# ----------------------------------------------------------------------------- reading and checking a config
def load(path) -> dict:
    """A config file (YAML or JSON) as a dict, read with a safe loader: a problem is an :class:`InputError` that
    names the file, the line and what is wrong (Snakemake says only "not valid JSON or YAML"). A YAML tag
    (``!!python/object/apply:...``) is refused, never run."""
    import json

    import yaml

    from .files import existing_file, wide_encoding_problem

    path = existing_file(path, "config file")
    if problem := wide_encoding_problem(path, "the config file"):
        raise InputError(problem)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text file ({err}); save it as UTF-8 (plain text)") from None
    try:  # JSON first, as Snakemake reads a config file (JSON may indent with tabs, YAML may not)
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InputError(_yaml_problem(path, err)) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{path}: holds {_as_words(doc)}; expected keys at the top level (key: value, one a line)")
    return doc


def _yaml_problem(path, err) -> str:
    """One line for a YAML error: file, line, column, what (a tag named as refused)."""
    mark = getattr(err, "problem_mark", None)
    line = f", line {mark.line + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
    tag = re.search(r"constructor for the tag '([^']+)'", problem)
    if tag:
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return (f"{path}{line}: the YAML tag {name!r} is refused: config files hold plain values (a tag can make a "
                "YAML loader run code); remove it")
    column = f", column {mark.column + 1}" if mark is not None else ""
    hint = " (YAML indents with spaces, not tabs)" if "'\\t'" in problem else ""
    context = getattr(err, "context", None)
    return f"{path}{line}{column}: not valid YAML: {problem}{f' ({context})' if context else ''}{hint}"


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` (changed and returned), sections key by key: how Snakemake merges its
    config files, in the order they are given."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


#: how the schema's types read in a message
_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
          "array": "a list", "object": "a section of keys", "null": "null"}
#: at most this many problems are told (the first ones, by key)
_MAX_PROBLEMS = 8


def check(config: dict) -> None:
    """Check ``config`` against the schema (:func:`schema`) and raise an :class:`InputError` of a few lines: per
    problem the key's path (``agent.updates``), the value and what is allowed, with a did-you-mean for a
    misspelt key or value. The workflow calls this before Snakemake's ``validate`` (which stays the authority,
    fills the defaults and, on an error, prints the whole schema).

    The JSON-schema keywords the schema uses (:data:`KEYWORDS`) are applied here, as ``jsonschema`` applies them
    (a test compares the two): the library's jobs import this module, and their environments need no
    ``jsonschema``."""
    problems = list(dict.fromkeys(_problems(config, schema(), [])))
    if not problems:
        return
    if len(problems) == 1:
        raise InputError(problems[0])
    more = len(problems) - _MAX_PROBLEMS
    shown = problems[:_MAX_PROBLEMS] + ([f"... and {more} more"] if more > 0 else [])
    raise InputError(f"{len(problems)} problems:\n  - " + "\n  - ".join(shown))


#: the JSON-schema keywords :func:`check` applies, and those that only annotate (a test keeps every keyword of the
#: schema among them)
KEYWORDS = ("type", "enum", "properties", "additionalProperties", "required", "pattern", "minimum", "maximum",
            "exclusiveMinimum", "exclusiveMaximum", "items", "minItems", "maxItems")
ANNOTATIONS = ("$schema", "description", "default")
_BOUNDS = {"minimum": (lambda v, b: v >= b, "at least {}"), "maximum": (lambda v, b: v <= b, "at most {}"),
           "exclusiveMinimum": (lambda v, b: v > b, "more than {}"),
           "exclusiveMaximum": (lambda v, b: v < b, "less than {}")}


def _is(value, json_type: str) -> bool:
    """Is ``value`` of a JSON type, as JSON schema says (a bool is no number; 2.0 is an integer)."""
    if json_type in ("integer", "number") and isinstance(value, bool):
        return False
    return {"integer": lambda v: isinstance(v, int) or (isinstance(v, float) and v.is_integer()),
            "number": lambda v: isinstance(v, (int, float)), "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool), "array": lambda v: isinstance(v, list),
            "object": lambda v: isinstance(v, dict), "null": lambda v: v is None}[json_type](value)


def _problems(value, part: dict, path: list) -> list[str]:
    """One line per way ``value`` (at the key path ``path``) breaks the schema's ``part``."""
    name = _key_path(path) or "the config"
    types = part.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if not any(_is(value, t) for t in types):  # the other keywords would only repeat it
            what = "no value (null)" if value is None else f"{_show(value)} is {_as_words(value)}"
            return [f"{name}: {what}; expected {' or '.join(_TYPES.get(t, t) for t in types)}"]
    out = []
    if "enum" in part and not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in part["enum"]):
        choices = part["enum"]
        out.append(f"{name}: {_show(value)} is not one of {', '.join(_plain(c) for c in choices)}"
                   f"{_did_you_mean(value, [c for c in choices if c is not None])}")
    if "pattern" in part and isinstance(value, str) and not re.search(part["pattern"], value):
        out.append(f"{name}: {_show(value)} does not match {part['pattern']}")
    if _is(value, "number"):
        for key, (ok, expected) in _BOUNDS.items():
            if key in part and not ok(value, part[key]):
                out.append(f"{name}: {_show(value)}; expected {expected.format(part[key])}")
    if isinstance(value, list):
        if len(value) < part.get("minItems", 0):
            out.append(f"{name}: {_show(value)}; expected a list of at least {part['minItems']} item(s)")
        if "maxItems" in part and len(value) > part["maxItems"]:
            out.append(f"{name}: {_show(value)}; expected a list of at most {part['maxItems']} item(s)")
        if isinstance(part.get("items"), dict):
            for i, item in enumerate(value):
                out += _problems(item, part["items"], [*path, i])
    if isinstance(value, dict):
        props = part.get("properties", {})
        out += [f"{_key_path([*path, key])}: missing (a required key)" for key in part.get("required", [])
                if key not in value]
        if part.get("additionalProperties") is False:
            section = f"the section {name}" if path else "the top level"
            listed = (f"allowed at {section}: {', '.join(props)}" if len(props) <= 20 else
                      f"{section} has {len(props)} keys: `landmarkflow config-keys` lists them with their meaning")
            out += [f"{_key_path([*path, str(key)])}: unknown key{_did_you_mean(key, props)} ({listed})"
                    for key in value if key not in props]
        for key, sub in props.items():
            if key in value:
                out += _problems(value[key], sub, [*path, key])
    return out


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _plain(value) -> str:
    """A value as it is written in a config file (strings bare, ``null``, lists in brackets)."""
    import json

    return value if isinstance(value, str) else json.dumps(value, default=repr)


def _show(value) -> str:
    """A value in a message: strings quoted, at most 60 characters."""
    text = repr(value) if isinstance(value, str) else _plain(value)
    return text if len(text) <= 60 else text[:57] + "..."


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
               type(None): "null"}


def _as_words(value) -> str:
    """What a value is, in the words of :data:`_TYPES` ("a list", "an integer")."""
    if isinstance(value, bool):
        return "a boolean"
    return _TYPES.get(_JSON_TYPES.get(type(value), ""), f"a {type(value).__name__}")


def _did_you_mean(value, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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
