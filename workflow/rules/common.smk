# Helpers, configuration and manifest loading; the other rule files hold only rules.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "src"))  # the library, also when it is not installed

from landmarkflow import manifest as mf
from landmarkflow.io import InputError, read_landmarks


validate(config, schema="../schemas/config.schema.yaml")

DEMO_DIR = "resources/demo"


wildcard_constraints:
    patient=r"[A-Za-z0-9_-]+",
    landmark=r"[A-Za-z0-9_-]+",
    variant=r"baseline|guided",


def is_activated(key):
    """Is the optional stage ``key`` switched on in the config?"""
    return bool(config.get(key, {}).get("activate", False))


def _must_exist_now(path):
    """Files of the demo cohort are made by the workflow; everything else must exist before it runs."""
    if not is_activated("demo"):
        return True
    return not Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(DEMO_DIR)))


ANNOTATOR = config.get("landmarks", {}).get("annotator")
UNMATCHED_TRUTH = config.get("landmarks", {}).get("unmatched_truth", "error")

try:
    MANIFEST = mf.load_manifest(config["cohort"], check_files=_must_exist_now, annotator=ANNOTATOR)
    MANIFEST.check_modalities(
        {f"{key}.modalities": config.get(key, {}).get("modalities", []) for key in ("agent", "pin", "ants")}
    )
except InputError as err:
    raise WorkflowError(str(err)) from None
validate(MANIFEST.table, schema="../schemas/manifest.schema.yaml")
for _warning in MANIFEST.warnings:  # once, when the workflow starts; the validation job logs them with its own
    logger.warning(_warning)

PATIENTS = MANIFEST.patients



def patient_files(wildcards):
    """Every file the manifest names for one patient."""
    return list(MANIFEST.rows(wildcards.patient)["path"])


def landmark_ids(patient):
    """Landmark identifiers of a patient's post-op file (read once validate_cohort has run)."""
    checkpoints.validate_cohort.get()
    return list(read_landmarks(MANIFEST.path(patient, "post", "landmarks", MANIFEST.primary_annotator(patient)))["landmark"])


def agent_variants(patient):
    """Both agent variants, or only the baseline when the patient has no resection mask."""
    if MANIFEST.path(patient, "post", "mask", "resection") is None:
        return ["baseline"]
    return ["baseline", "guided"]


def agent_models(wildcards):
    return expand(
        "results/{patient}/agents/{landmark}_{variant}.pt",
        patient=wildcards.patient,
        landmark=landmark_ids(wildcards.patient),
        variant=wildcards.variant,
    )


def agent_landmarks(wildcards):
    """Every agent_<variant>.csv of the cohort."""
    return [f"results/{p}/landmarks/agent_{v}.csv" for p in PATIENTS for v in agent_variants(p)]


def pin_models(wildcards):
    return expand("results/{patient}/pin/{landmark}.pt", patient=wildcards.patient, landmark=landmark_ids(wildcards.patient))


def method_landmarks(wildcards):
    """Every results/<patient>/landmarks/<method>.csv the run produces."""
    files = expand("results/{patient}/landmarks/identity.csv", patient=PATIENTS)
    if is_activated("ants"):
        files += expand("results/{patient}/landmarks/{method}.csv", patient=PATIENTS, method=ANTS_METHODS)
    if is_activated("pin"):
        files += expand("results/{patient}/landmarks/pin.csv", patient=PATIENTS)
    return files + agent_landmarks(wildcards)


ANTS_METHODS = ["ants_rigid", "ants_affine", "ants_syn", "ants_syn_nomask"]


def jacobian_files(wildcards):
    return expand("results/{patient}/ants", patient=PATIENTS) if is_activated("ants") else []


def agent_outputs(wildcards):
    """End points, trajectories and training logs of every agent and PIN (for the report)."""
    out = []
    for p in PATIENTS:
        for v in agent_variants(p):
            out += [f"results/{p}/agents/{v}_endpoints.tsv", f"results/{p}/agents/{v}_trajectories.tsv"]
            out += [f"results/{p}/agents/{lm}_{v}_training.tsv" for lm in landmark_ids(p)]
        if is_activated("pin"):
            out += [f"results/{p}/pin/endpoints.tsv", f"results/{p}/pin/trajectories.tsv"]
            out += [f"results/{p}/pin/{lm}_training.tsv" for lm in landmark_ids(p)]
    return out


def patient_method_landmarks(wildcards):
    """The landmark files of every method for one patient (identity, ANTs, agents)."""
    p = wildcards.patient
    files = [f"results/{p}/landmarks/identity.csv"]
    if is_activated("ants"):
        files += [f"results/{p}/landmarks/{m}.csv" for m in ANTS_METHODS]
    if is_activated("pin"):
        files.append(f"results/{p}/landmarks/pin.csv")
    return files + [f"results/{p}/landmarks/agent_{v}.csv" for v in agent_variants(p)]


def radiomics_outputs(wildcards):
    return ["results/cohort/radiomics_summary.tsv"] if is_activated("radiomics") else []


def workflow_file(path):
    """A path of the config as given, or, when it is not there, inside the workflow (config/radiomics.yaml from any working directory)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    return os.path.join(workflow.basedir, path)
