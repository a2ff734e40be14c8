# Helpers, configuration and manifest loading; the other rule files hold only rules.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "src"))  # the library, also when it is not installed

from landmarkflow import manifest as mf
from landmarkflow.io import InputError


validate(config, schema="../schemas/config.schema.yaml")

DEMO_DIR = "resources/demo"


wildcard_constraints:
    patient=r"[A-Za-z0-9_-]+",


def is_activated(key):
    """Is the optional stage ``key`` switched on in the config?"""
    return bool(config.get(key, {}).get("activate", False))


def _must_exist_now(path):
    """Files of the demo cohort are made by the workflow; everything else must exist before it runs."""
    if not is_activated("demo"):
        return True
    return not Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(DEMO_DIR)))


try:
    MANIFEST = mf.load_manifest(config["cohort"], check_files=_must_exist_now)
except InputError as err:
    raise WorkflowError(str(err)) from None
validate(MANIFEST.table, schema="../schemas/manifest.schema.yaml")

PATIENTS = MANIFEST.patients

