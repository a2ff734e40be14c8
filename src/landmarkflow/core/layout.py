"""The ``results/`` layout: every path the workflow writes, and the parser that tells a file from its path.

The rules take their outputs, logs and benchmarks from here (a test compares every output of a dry run
with :func:`parse`); the workflow's input functions build the inputs of the cohort stages from here, and
the evaluation and the report read exactly the files they are given, telling what a file is with
:func:`parse`. Paths are relative; a Snakemake ``module`` with a ``prefix`` puts them under that prefix,
which :func:`parse` ignores. Any argument may be a wildcard (``"{patient}"``).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import methods

#: what an identifier (patient, modality, annotator, landmark) may hold: it becomes part of file names
#: and Snakemake wildcards
ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: longest identifier: parts of file names, which may have 255 bytes
MAX_ID = 64


def safe_identifier(label: str) -> str:
    """An identifier for a label as users write it ("Point 1", "ACA, left"): each run of other characters
    becomes ``_`` (``Point_1``, ``ACA_left``); a label that is one already is kept."""
    label = str(label).strip()
    if ID_RE.match(label):
        return label
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_") or "landmark"

RESULTS = "results"
COHORT = f"{RESULTS}/cohort"
#: the jobs' logs and benchmarks: results/logs/<rule>/..., results/benchmarks/<rule>/...
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
#: the folder of ``landmarkflow seeds`` (one working folder per seed)
SEEDS = f"{RESULTS}/seeds"
#: the workflow's own folders directly under results/, beside the patients' results/<patient>/: no patient may
#: take one of these names, in any case (a case-insensitive file system, macOS's or Windows', makes
#: ``Cohort`` the cohort's folder)
RESERVED = tuple(Path(folder).name for folder in (COHORT, LOGS, BENCHMARKS, SEEDS))


def reserved(name: str) -> str | None:
    """The workflow's own folder under results/ (of :data:`RESERVED`) that ``name`` names, in any case, or None."""
    return next((r for r in RESERVED if r.casefold() == str(name).casefold()), None)


#: the folder of a patient's trained models and their training logs, under results/<patient>/<folder>/
TRAINED = "trained"
#: the variant name of the fine agents in the agents' trained folder (``<landmark>_fine.pt``)
FINE = "fine"
#: the files of the cohort stages, by name
COHORT_FILES = ("manifest.tsv", "warnings.tsv", "errors.tsv", "summary.tsv", "predictions.tsv", "rigid_fit.tsv",
                "rigid_residuals.tsv", "landmarks_to_check.tsv", "summary_by_cavity.tsv", "radiomics.tsv", "radiomics_summary.tsv",
                "radiomics_changes.tsv", "report.html",
                "figures", "patients")


# ----------------------------------------------------------------------------- per patient
def patient_dir(patient: str) -> str:
    return f"{RESULTS}/{patient}"


def patient_manifest(patient: str) -> str:
    """The patient's validated manifest rows (paths made absolute)."""
    return f"{patient_dir(patient)}/manifest.tsv"


def patient_warnings(patient: str) -> str:
    return f"{patient_dir(patient)}/warnings.tsv"


def preproc(patient: str) -> str:
    return f"{patient_dir(patient)}/preproc"


def landmarks(patient: str, method: str) -> str:
    return f"{patient_dir(patient)}/landmarks/{method}.csv"


def ants_dir(patient: str) -> str:
    return f"{patient_dir(patient)}/ants"


def lesions_dir(patient: str) -> str:
    """The lesion masks every later stage uses: the manifest's, completed by derived ones where it has none
    (``{pre_tumor,post_resection}.nii.gz``, ``lesions.json``: which were given and which derived, ``qc.png``)."""
    return f"{patient_dir(patient)}/lesions"


#: the svf folder's maps of forward-backward inconsistency (mm) on each time point's grid: what lesion masks are
#: derived from (pre: e_f on the pre-op grid, post: e_b on the post-op grid)
SVF_CONSISTENCY = {"pre": "consistency_mm.nii.gz", "post": "consistency_post_mm.nii.gz"}


def svf_dir(patient: str) -> str:
    """The second registration's folder: its maps (consistency, no correspondence, Jacobian) and Jacobian table."""
    return f"{patient_dir(patient)}/svf"


#: the table of a registration folder: the share of folding voxels of each of its deformations
JACOBIAN = "jacobian.tsv"


def jacobian_table(registration_dir) -> str:
    """The Jacobian table inside a registration folder."""
    return f"{registration_dir}/{JACOBIAN}"


def jacobian_image_name(method: str) -> str:
    """The Jacobian determinant image of a deformable registration (``ants_syn``, ``svf``) in its folder."""
    return f"{method}_jacobian.nii.gz"


def jacobian_image(patient: str, method: str) -> str:
    """The Jacobian determinant image of ``method`` for a patient (ANTs SyN's in ``ants/``, svf's in ``svf/``)."""
    folder = svf_dir(patient) if method == "svf" else ants_dir(patient)
    return f"{folder}/{jacobian_image_name(method)}"


#: the record of the device a PyTorch job ran on, inside its output folder (trained models, svf)
DEVICE = "device.json"


def device_file(folder) -> str:
    return f"{folder}/{DEVICE}"


def radiomics(patient: str) -> str:
    return f"{patient_dir(patient)}/radiomics.tsv"


def slicer(patient: str) -> str:
    """The 3D Slicer review folder: one point list per method."""
    return f"{patient_dir(patient)}/slicer"


def _search(method: str) -> tuple[str, str]:
    """(folder, file prefix) of a search method; ``agent_{variant}`` (a wildcard) follows the agents' rule."""
    if method in methods.SEARCH:
        return methods.SEARCH[method]
    if method.startswith("agent_{"):
        return "agents", method.removeprefix("agent_") + "_"
    raise ValueError(f"{method}: not a method that searches from start points ({', '.join(methods.SEARCH)})")


def endpoints(patient: str, method: str) -> str:
    folder, prefix = _search(method)
    return f"{patient_dir(patient)}/{folder}/{prefix}endpoints.tsv"


def trajectories(patient: str, method: str) -> str:
    folder, prefix = _search(method)
    return f"{patient_dir(patient)}/{folder}/{prefix}trajectories.tsv"


def trained(patient: str, method: str) -> str:
    """The folder the training job of a search method writes (one per patient: agents or PIN)."""
    folder, _ = _search(method)
    return f"{patient_dir(patient)}/{folder}/{TRAINED}"


def agent_models(patient: str) -> str:
    """The folder of a patient's trained agents (one batched job)."""
    return trained(patient, "agent_baseline")


def pin_models(patient: str) -> str:
    return trained(patient, "pin")


def model_name(landmark: str, variant: str | None = None) -> str:
    return f"{landmark}_{variant}.pt" if variant else f"{landmark}.pt"


def training_name(landmark: str, variant: str | None = None) -> str:
    return f"{landmark}_{variant}_training.tsv" if variant else f"{landmark}_training.tsv"


def training_log(patient: str, method: str, landmark: str) -> str:
    _, prefix = _search(method)
    return f"{trained(patient, method)}/{training_name(landmark, prefix.rstrip('_'))}"


# ----------------------------------------------------------------------------- the cohort, logs, benchmarks
def cohort(name: str) -> str:
    """A file of the cohort stages (:data:`COHORT_FILES`)."""
    if name not in COHORT_FILES:
        raise ValueError(f"{name}: not a cohort file ({', '.join(COHORT_FILES)})")
    return f"{COHORT}/{name}"


def log(rule: str, job: str) -> str:
    """``job``: the wildcard part of the job (``{patient}``, ``{patient}/{variant}``, or the rule's name)."""
    return f"{LOGS}/{rule}/{job}.log"


def benchmark(rule: str, job: str) -> str:
    """``job``: the wildcard part of the rule's benchmark file (``<patient>``)."""
    return f"{BENCHMARKS}/{rule}/{job}.tsv"


# ----------------------------------------------------------------------------- parsing
def parse(path) -> dict:
    """What a results file is, from its path: ``kind`` and, as they apply, ``patient``, ``method``,
    ``landmark``, ``rule``, ``job``, ``folder`` and ``name``.

    Kinds: ``landmarks``, ``endpoints``, ``trajectories``, ``training`` (a log inside a trained folder),
    ``trained`` (the folder), ``preproc``, ``lesions``, ``registration`` (the ANTs folder), ``jacobian``, ``manifest``,
    ``warnings``, ``radiomics``, ``slicer``, ``cohort`` (a file of :data:`COHORT_FILES`, its ``name``),
    ``log``, ``benchmark``. Whatever stands before the ``results`` folder (a module's prefix) is ignored.
    Raises ValueError for a path outside the layout."""
    parts = Path(path).parts
    for i in reversed([i for i, part in enumerate(parts) if part == RESULTS]):
        key = _parse_relative(parts[i + 1:])
        if key is not None:
            return key
    raise ValueError(f"{path}: not a file of the results layout")


_PATIENT_FILES = {"manifest.tsv": "manifest", "warnings.tsv": "warnings", "radiomics.tsv": "radiomics",
                  "preproc": "preproc", "lesions": "lesions", "ants": "registration", "svf": "registration", "slicer": "slicer"}


def _parse_relative(rel: tuple) -> dict | None:
    if not rel:
        return None
    name = rel[-1]
    if rel[0] in (Path(BENCHMARKS).name, Path(LOGS).name) and len(rel) >= 3:
        kind = rel[0][:-1]
        return {"kind": kind, "rule": rel[1], "job": str(Path(*rel[2:]).with_suffix(""))}
    if rel[0] == Path(COHORT).name:
        return {"kind": "cohort", "name": str(Path(*rel[1:]))} if len(rel) >= 2 and rel[1] in COHORT_FILES else None
    if len(rel) == 2:
        kind = _PATIENT_FILES.get(name)
        return None if kind is None else {"kind": kind, "patient": rel[0]}
    if len(rel) == 4 and rel[2] == TRAINED:  # a training log inside a trained folder
        fine = training_name("", FINE)
        if rel[1] == "agents" and name.endswith(fine) and len(name) > len(fine):  # the fine agents (agent_seeded's)
            return {"kind": "training", "patient": rel[0], "method": "agent_fine", "landmark": name[: -len(fine)]}
        for method, (mfolder, prefix) in methods.SEARCH.items():
            suffix = training_name("", prefix.rstrip("_"))
            if rel[1] == mfolder and name.endswith(suffix) and len(name) > len(suffix):
                return {"kind": "training", "patient": rel[0], "method": method, "landmark": name[: -len(suffix)]}
        return None
    if len(rel) != 3:
        return None
    patient, folder = rel[0], rel[1]
    if name == TRAINED and folder in {f for f, _ in methods.SEARCH.values()}:
        return {"kind": "trained", "patient": patient, "folder": folder}
    if folder == "landmarks" and name.endswith(".csv"):
        return {"kind": "landmarks", "patient": patient, "method": name[: -len(".csv")]}
    if folder in ("ants", "svf") and name == JACOBIAN:
        return {"kind": "jacobian", "patient": patient}
    for method, (mfolder, prefix) in methods.SEARCH.items():
        if folder != mfolder:
            continue
        for kind in ("endpoints", "trajectories"):
            if name == f"{prefix}{kind}.tsv":
                return {"kind": kind, "patient": patient, "method": method}
    return None
