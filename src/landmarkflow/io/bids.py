"""Turn a longitudinal BIDS dataset into a cohort manifest (``landmarkflow bids-manifest``), with pybids.

The raw data (``sub-<label>/ses-<label>/anat/``) give the images; two sessions per subject are the two time
points. Suffixes and entities give the modalities (:data:`MODALITIES`): ``T1w`` with a contrast-agent entity
(``ce-<agent>``) is ``t1ce``, ``T1w`` is ``t1``, ``T2w`` is ``t2``, ``FLAIR`` is ``flair``. Landmarks and masks,
which BIDS has no raw suffix for, come from a derivatives folder laid out the same way (:data:`DERIVATIVES`)::

    derivatives/landmarkflow/sub-01/ses-post/anat/sub-01_ses-post_desc-expert_landmarks.mrk.json
    derivatives/landmarkflow/sub-01/ses-pre/anat/sub-01_ses-pre_desc-expert_landmarks.csv
    derivatives/landmarkflow/sub-01/ses-post/anat/sub-01_ses-post_label-resection_mask.nii.gz
    derivatives/landmarkflow/sub-01/ses-pre/anat/sub-01_ses-pre_label-tumor_mask.nii.gz
    derivatives/landmarkflow/sub-01/ses-pre/anat/sub-01_ses-pre_label-brain_mask.nii.gz

``desc`` names the annotator, ``label`` the mask (tumor, resection, brain). Paths in the manifest are relative
to its folder; nothing is copied.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from ..core.errors import InputError
from ..core.files import write_table

log = logging.getLogger(__name__)

#: the folder of the landmarks and masks, relative to the dataset
DERIVATIVES = Path("derivatives") / "landmarkflow"
#: session labels read as the pre-operative and the post-operative time point when none are given
PRE_LABELS = ("pre", "preop", "baseline", "base", "before")
POST_LABELS = ("post", "postop", "followup", "follow", "fu", "after")
#: BIDS suffix -> modality; a T1w with a contrast-agent entity (ce-...) is t1ce
MODALITIES = {"T1w": "t1", "T2w": "t2", "FLAIR": "flair"}
LANDMARK_EXTENSIONS = (".csv", ".mrk.json", ".fcsv")
MASKS = ("tumor", "resection", "brain")
IMAGE_EXTENSIONS = (".nii", ".nii.gz")


def modality(entities: dict) -> str | None:
    """The manifest's modality of a raw BIDS image from its entities (None: not one the workflow uses)."""
    name = MODALITIES.get(entities.get("suffix", ""))
    if name == "t1" and entities.get("ceagent"):
        return "t1ce"
    return name


def sessions_to_timepoints(subject: str, sessions, pre: str | None = None, post: str | None = None) -> dict:
    """{session label: "pre" or "post"} of one subject: the labels given, else a guess from the labels' names
    (:data:`PRE_LABELS`, :data:`POST_LABELS`) or, for two sessions numbered or dated, their order (the first is
    pre-operative). An :class:`InputError` listing the sessions when there is no sure guess."""
    sessions = sorted(sessions)
    listed = ", ".join(sessions) or "none"
    if pre is not None or post is not None:
        if pre not in sessions or post not in sessions:
            raise InputError(f"subject {subject}: sessions {listed}; --pre-session {pre!r} and --post-session {post!r} "
                             "must both be among them")
        return {pre: "pre", post: "post"}
    if len(sessions) != 2:
        raise InputError(f"subject {subject}: sessions {listed}; expected two (pre- and post-operative): name them with "
                         "--pre-session and --post-session")
    named = {s: ("pre" if s.lower() in PRE_LABELS else "post" if s.lower() in POST_LABELS else None) for s in sessions}
    if sorted(v for v in named.values() if v) == ["post", "pre"]:
        return named
    if all(s.isdigit() for s in sessions):  # 1 and 2, 01 and 02, or dates 20230101 and 20230612
        a, b = sorted(sessions, key=int)
        return {a: "pre", b: "post"}
    raise InputError(f"subject {subject}: sessions {listed}; cannot tell which is pre- and which post-operative: name "
                     "them with --pre-session and --post-session")


def make_manifest(dataset, outdir, pre: str | None = None, post: str | None = None, derivatives=None) -> pd.DataFrame:
    """Write ``outdir/cohort.tsv`` for the BIDS ``dataset``; return the manifest. ``pre``/``post``: the session labels
    of the time points (default: guessed per subject, :func:`sessions_to_timepoints`); ``derivatives``: the folder of
    landmarks and masks (default ``dataset/derivatives/landmarkflow``). Subjects without post-operative landmarks
    cannot be used and are skipped with a warning."""
    from bids import BIDSLayout
    from bids.layout import parse_file_entities

    dataset, outdir = Path(dataset), Path(outdir)
    if not (dataset / "dataset_description.json").is_file():
        raise InputError(f"{dataset}: not a BIDS dataset (no dataset_description.json)")
    deriv = Path(derivatives) if derivatives is not None else dataset / DERIVATIVES
    layout = BIDSLayout(str(dataset), validate=False)
    rows, skipped = [], []
    for subject in layout.get_subjects():
        timepoint = sessions_to_timepoints(subject, layout.get_sessions(subject=subject), pre, post)
        found = []
        for f in layout.get(subject=subject, datatype="anat", extension=list(IMAGE_EXTENSIONS)):
            ent = f.get_entities()
            mod = modality(ent)
            if mod is None or ent.get("session") not in timepoint:
                continue
            found.append((timepoint[ent["session"]], "image", mod, Path(f.path)))
        for path in sorted((deriv / f"sub-{subject}").rglob("*")) if (deriv / f"sub-{subject}").is_dir() else []:
            ent = parse_file_entities(str(path))
            tp = timepoint.get(ent.get("session"))
            if tp is None or not path.is_file():
                continue
            if ent.get("suffix") == "landmarks" and ent.get("extension") in LANDMARK_EXTENSIONS:
                found.append((tp, "landmarks", ent.get("desc", "expert"), path))
            elif ent.get("suffix") == "mask" and ent.get("label") in MASKS and ent.get("extension") in IMAGE_EXTENSIONS:
                found.append((tp, "mask", ent["label"], path))
        _check_unique(subject, found)
        if not any(tp == "post" and kind == "landmarks" for tp, kind, _, _ in found):
            skipped.append(subject)
            continue
        for tp, kind, name, path in sorted(found, key=lambda r: (r[0] != "pre", r[1], r[2])):
            rows.append({"patient": f"sub-{subject}", "timepoint": tp, "kind": kind, "name": name,
                         "path": os.path.relpath(path.resolve(), outdir.resolve())})
    if skipped:
        log.warning("skipped %d subject(s) without post-operative landmarks in %s: %s", len(skipped), deriv,
                    ", ".join(skipped))
    if not rows:
        raise InputError(f"{dataset}: no subject has post-operative landmarks under {deriv} (expected "
                         "sub-<label>/ses-<label>/anat/sub-<label>_ses-<label>_desc-<annotator>_landmarks.mrk.json)")
    df = pd.DataFrame(rows, columns=["patient", "timepoint", "kind", "name", "path"])
    write_table(df, outdir / "cohort.tsv")
    return df


def _check_unique(subject: str, found: list) -> None:
    """Two files for one row of the manifest (two T1w runs of a session, say): an error naming both."""
    seen: dict = {}
    for tp, kind, name, path in found:
        if (tp, kind, name) in seen:
            raise InputError(f"subject {subject}: {seen[tp, kind, name]} and {path} are both the {tp}-operative {kind} "
                             f"{name}; keep one (or move the other out of the dataset, e.g. into sourcedata/)")
        seen[tp, kind, name] = path
