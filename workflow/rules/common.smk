# Helpers, configuration and manifest loading; the other rule files hold only rules.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# the project's root, from this file: also right when the workflow is used as a module of another one
WORKFLOW_ROOT = os.path.abspath(os.path.join(workflow.current_basedir, "..", ".."))
sys.path.insert(0, os.path.join(WORKFLOW_ROOT, "src"))  # the library, also when it is not installed

from landmarkflow.cohort import manifest as mf
from landmarkflow.core import layout, methods
from landmarkflow.core.config import AGENT_DETECTION_KEYS, PIN_DETECTION_KEYS, check_relations, result_settings, split_settings
from landmarkflow.core.config import check as check_config, load as load_config
from landmarkflow.core.errors import InputError
from landmarkflow.demo.synthetic import DEMO_DIR, DEMO_FILES
from landmarkflow.detect.consensus import ConsensusConfig

# the config files once more with a safe loader: Snakemake's takes some YAML tags (!!python/name:..., which name
# Python objects); then a config the schema refuses: the key's path, its value and what is allowed, in a few
# lines (Snakemake's validate would print the whole schema)
try:
    for _configfile in workflow.configfiles:
        load_config(_configfile)
    check_config(config)
except InputError as err:
    raise WorkflowError(f"config: {err}") from None
# the schema fills in every default: below, every key is there
validate(config, schema="../schemas/config.schema.yaml")
try:  # what the schema cannot say: relations between settings
    ConsensusConfig.from_settings(config["consensus"])
    check_relations(config)
except ValueError as err:
    raise WorkflowError(f"config: {err}") from None


wildcard_constraints:
    patient=r"[A-Za-z0-9_-]+",
    landmark=r"[A-Za-z0-9_-]+",
    variant="|".join(methods.AGENT_VARIANTS),


def is_activated(key):
    """Is the optional stage ``key`` switched on in the config?"""
    return bool(config[key]["activate"])


#: the switched-on optional stages (the method catalogue decides which methods they bring)
ACTIVE = {key for key in ("demo", "pin", "ants", "svf", "consensus", "radiomics") if is_activated(key)}


def _must_exist_now(path):
    """Files of the demo cohort are made by the workflow; everything else must exist before it runs."""
    if not is_activated("demo"):
        return True
    return not Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(DEMO_DIR)))


ANNOTATOR = config["landmarks"]["annotator"]
UNMATCHED_TRUTH = config["landmarks"]["unmatched_truth"]
try:
    MANIFEST = mf.load_manifest(config["cohort"], check_files=_must_exist_now, annotator=ANNOTATOR,
                                preference=config["reference_modality"])
    MANIFEST.check_modalities({f"{key}.modalities": config[key]["modalities"] for key in ("agent", "pin", "ants", "svf", "radiomics")})
except InputError as err:
    raise WorkflowError(str(err)) from None
validate(MANIFEST.table, schema="../schemas/manifest.schema.yaml")
for _warning in MANIFEST.warnings:  # once, when the workflow starts; the validation job logs them with its own
    logger.warning(_warning)
PATIENTS = MANIFEST.patients

# training jobs get the training settings, redetection jobs the detection settings: a change to one
# reruns only the jobs that use it
AGENT_TRAINING, AGENT_DETECTION = split_settings(config["agent"], AGENT_DETECTION_KEYS)
PIN_TRAINING, PIN_DETECTION = split_settings(config["pin"], PIN_DETECTION_KEYS)
#: what the report shows of the config: the sections of the stages that ran
REPORT_CONFIG = result_settings(config)

#: lesion masks are derived where the manifest has none (from the svf registration's inconsistency)
DERIVE_LESIONS = bool(config["lesions"]["derive"]) and is_activated("svf")
if config["lesions"]["derive"] and not is_activated("svf"):
    logger.warning("lesions.derive is on but svf.activate is off: no lesion mask is derived (the masks come from svf)")

if not is_activated("ants"):
    logger.warning("agent_seeded is skipped: its agents start at ANTs SyN's landmarks, and ants.activate is false")


def patient_files(wildcards):
    """Every file the manifest names for one patient."""
    return list(MANIFEST.rows(wildcards.patient)["path"])


def patient_rows(wildcards):
    """One patient's manifest rows: the parameters of its validation (a change there revalidates it)."""
    return mf.patient_rows(MANIFEST, wildcards.patient)


def missing_lesions(patient):
    """The time points for which the manifest has no lesion mask (pre: tumour, post: cavity)."""
    return [tp for tp in mf.TIMEPOINTS if MANIFEST.path(patient, tp, "mask", mf.LESIONS[tp]) is None]


def lesion_inputs(wildcards):
    """What a patient's lesion folder is made from: its preprocessing and, where a mask is derived, svf's maps."""
    out = {"preproc": layout.preproc(wildcards.patient)}
    if DERIVE_LESIONS and missing_lesions(wildcards.patient):
        out["svf"] = layout.svf_dir(wildcards.patient)
    return out


def lesion_settings(wildcards):
    """The lesions settings of a patient whose masks are derived; none for one whose masks are all given (a change of
    the rule's settings reruns only the patients it concerns)."""
    return dict(config["lesions"]) if DERIVE_LESIONS and missing_lesions(wildcards.patient) else {}


def patient_methods(patient):
    """The methods the config runs for one patient (the catalogue's rule: stages and the masks it has, given or
    derived)."""
    has_resection = "post" not in missing_lesions(patient) or DERIVE_LESIONS
    return methods.patient_methods(ACTIVE, has_resection)


def consensus_inputs(wildcards):
    """The landmark files the consensus of a patient combines: its registration and listed methods that run."""
    run = patient_methods(wildcards.patient)
    cons = config["consensus"]
    wanted = [cons["registration"]] + ([cons["second"]] if cons["second"] else []) + list(cons["methods"])
    return {m: layout.landmarks(wildcards.patient, m) for m in wanted if m in run}


def patient_method_landmarks(wildcards):
    """The landmark files of every method for one patient."""
    return [layout.landmarks(wildcards.patient, m) for m in patient_methods(wildcards.patient)]


def radiomics_landmarks(wildcards):
    """The landmark files radiomics extracts around: radiomics.methods (default the consensus), or all."""
    wanted = config["radiomics"]["methods"]
    run = patient_methods(wildcards.patient)
    chosen = run if "all" in wanted else [m for m in run if m in wanted]
    return [layout.landmarks(wildcards.patient, m) for m in (chosen or run)]


def method_landmarks(wildcards):
    """Every results/<patient>/landmarks/<method>.csv the run produces (and so the evaluation reads)."""
    return [layout.landmarks(p, m) for p in PATIENTS for m in patient_methods(p)]


def jacobian_files(wildcards):
    """The folders of the deformable registrations that run (each with its Jacobian table)."""
    folders = {"ants": layout.ants_dir, "svf": layout.svf_dir}
    return [folders[stage](p) for stage in folders if is_activated(stage) for p in PATIENTS]


def search_outputs(wildcards):
    """End points, trajectories and training logs of every agent and PIN (for the report)."""
    out = []
    for p in PATIENTS:
        for method in patient_methods(p):
            if method in methods.SEARCH:
                out += [layout.endpoints(p, method), layout.trajectories(p, method)]
                out += [] if layout.trained(p, method) in out else [layout.trained(p, method)]
    return out


def benchmark_files(wildcards):
    """The benchmark file of every job that has one (for the report's time and memory table)."""
    out = []
    for p in PATIENTS:
        if is_activated("demo") and not all(_must_exist_now(f) for f in MANIFEST.rows(p)["path"]):
            out.append(layout.benchmark("make_demo_patient", p))
        out.append(layout.benchmark("preprocess_patient", p))
        out.append(layout.benchmark("complete_lesions", p))
        if is_activated("ants"):
            out.append(layout.benchmark("register_ants", p))
        if is_activated("svf"):
            out.append(layout.benchmark("register_svf", p))
        if is_activated("radiomics"):
            out.append(layout.benchmark("extract_radiomics", p))
        if is_activated("pin"):
            out += [layout.benchmark("redetect_pin", p), layout.benchmark("train_pin", p)]
        out.append(layout.benchmark("train_agents", p))
    return out


def radiomics_outputs(wildcards):
    return [layout.cohort("radiomics_summary.tsv"), layout.cohort("radiomics_changes.tsv")] if is_activated("radiomics") else []


def workflow_file(path):
    """A path of the config as given, or, when it is not there, inside the workflow (config/radiomics.yaml from any working directory)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    return os.path.join(WORKFLOW_ROOT, path)
