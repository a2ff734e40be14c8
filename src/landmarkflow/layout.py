"""The ``results/`` layout: where the workflow's stages write, for those that read it.

The rules declare these paths as outputs; the workflow's input functions (``common.smk``)
build the inputs of the cohort stages from here, and :mod:`.metrics` and :mod:`.report`
read exactly the files they are given, telling what a file is from its path with
:func:`parse`. Paths are relative; a Snakemake ``module`` with a ``prefix`` puts them
under that prefix, which :func:`parse` ignores.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = "results"

#: methods that search from start points: method -> (folder under results/<patient>, file prefix)
SEARCH_METHODS = {"agent_baseline": ("agents", "baseline_"), "agent_guided": ("agents", "guided_"),
                  "agent_seeded": ("agents", "seeded_"), "pin": ("pin", "")}


def preproc(patient: str) -> str:
    return f"{RESULTS}/{patient}/preproc"


def landmarks(patient: str, method: str) -> str:
    return f"{RESULTS}/{patient}/landmarks/{method}.csv"


def ants_dir(patient: str) -> str:
    return f"{RESULTS}/{patient}/ants"


def jacobian(patient: str) -> str:
    return f"{ants_dir(patient)}/jacobian.tsv"


def endpoints(patient: str, method: str) -> str:
    folder, prefix = SEARCH_METHODS[method]
    return f"{RESULTS}/{patient}/{folder}/{prefix}endpoints.tsv"


def trajectories(patient: str, method: str) -> str:
    folder, prefix = SEARCH_METHODS[method]
    return f"{RESULTS}/{patient}/{folder}/{prefix}trajectories.tsv"


#: the folder of a patient's trained models and their training logs, under results/<patient>/<folder>/
TRAINED = "trained"


def trained(patient: str, method: str) -> str:
    """The folder the training job of a search method writes (one per patient: agents or PIN)."""
    folder, _ = SEARCH_METHODS[method]
    return f"{RESULTS}/{patient}/{folder}/{TRAINED}"


def model_name(landmark: str, variant: str | None = None) -> str:
    return f"{landmark}_{variant}.pt" if variant else f"{landmark}.pt"


def training_name(landmark: str, variant: str | None = None) -> str:
    return f"{landmark}_{variant}_training.tsv" if variant else f"{landmark}_training.tsv"


def training_log(patient: str, method: str, landmark: str) -> str:
    _, prefix = SEARCH_METHODS[method]
    return f"{trained(patient, method)}/{training_name(landmark, prefix.rstrip('_'))}"


def benchmark(rule: str, job: str) -> str:
    """``job``: the wildcard part of the rule's benchmark file (``<patient>`` or ``<patient>/<landmark>_<variant>``)."""
    return f"{RESULTS}/benchmarks/{rule}/{job}.tsv"


def parse(path) -> dict:
    """What a results file is, from its path: ``kind`` (``landmarks``, ``endpoints``, ``trajectories``,
    ``training``, ``benchmark``, ``preproc``, ``jacobian``) and, as they apply, ``patient``, ``method``,
    ``landmark``, ``rule`` and ``job``; a trained folder is kind ``trained``, with ``patient`` and ``folder``.
    Whatever stands before the ``results`` folder (a module's prefix) is ignored. Raises ValueError for a path outside the layout."""
    parts = Path(path).parts
    for i in reversed([i for i, part in enumerate(parts) if part == RESULTS]):
        key = _parse_relative(parts[i + 1:])
        if key is not None:
            return key
    raise ValueError(f"{path}: not a file of the results layout")


def _parse_relative(rel: tuple) -> dict | None:
    if not rel:
        return None
    name = rel[-1]
    if rel[0] == "benchmarks" and len(rel) >= 3:
        return {"kind": "benchmark", "rule": rel[1], "job": str(Path(*rel[2:]).with_suffix(""))}
    if len(rel) == 2 and name == "preproc":
        return {"kind": "preproc", "patient": rel[0]}
    if len(rel) == 4 and rel[2] == TRAINED:  # a training log inside a trained folder
        for method, (mfolder, prefix) in SEARCH_METHODS.items():
            suffix = training_name("", prefix.rstrip("_"))
            if rel[1] == mfolder and name.endswith(suffix) and len(name) > len(suffix):
                return {"kind": "training", "patient": rel[0], "method": method, "landmark": name[: -len(suffix)]}
        return None
    if len(rel) != 3:
        return None
    patient, folder = rel[0], rel[1]
    if name == TRAINED and folder in {f for f, _ in SEARCH_METHODS.values()}:
        return {"kind": "trained", "patient": patient, "folder": folder}
    if folder == "landmarks" and name.endswith(".csv"):
        return {"kind": "landmarks", "patient": patient, "method": name[: -len(".csv")]}
    if folder == "ants" and name == "jacobian.tsv":
        return {"kind": "jacobian", "patient": patient}
    for method, (mfolder, prefix) in SEARCH_METHODS.items():
        if folder != mfolder:
            continue
        for kind in ("endpoints", "trajectories"):
            if name == f"{prefix}{kind}.tsv":
                return {"kind": kind, "patient": patient, "method": method}
    return None
