"""A config for a real cohort in one command (``landmarkflow init MANIFEST``).

:func:`starter_config` reads a manifest and writes the text of a commented config: the values the
manifest decides (the modalities every patient has at both time points, which masks are there and what
follows from their absence, whether the scans look skull-stripped) and the defaults for real cohorts
(demo off, PIN off, the careful ANTs preset), each with the reason beside it. Snakemake merges it over
``config/config.yaml`` (the demo's), so it sets every key in which the demo differs.
"""

from __future__ import annotations

import json

import numpy as np

from ..core.config import default
from ..imaging.image import read_image
from .manifest import LESIONS, Manifest, canonical_modality

#: share of voxels at the image's minimum above which a scan looks skull-stripped (whole-head scans have
#: noise or tissue almost everywhere; a skull-stripped brain fills a third to a half of its box)
STRIPPED_SHARE = 0.45
#: patients whose first image is opened for that check
PROBE_PATIENTS = 3


def background_share(path) -> float:
    """Share of an image's voxels at its minimum (the background of a skull-stripped scan)."""
    data = read_image(path).data
    return float(np.mean(data <= data.min()))


def starter_config(m: Manifest, cohort_path: str) -> str:
    """The text of a commented config for the cohort of ``m`` (``cohort_path`` as the config names it)."""
    patients = m.patients
    common = [mod for mod in m.common_modalities(patients[0]) if all(mod in m.common_modalities(p) for p in patients)]
    order = default(None, "reference_modality")
    canon = [canonical_modality(o) for o in order]  # a manifest's T1w, T1Gd, FLAIR in the order's places
    common.sort(key=lambda mod: (canon.index(canonical_modality(mod)) if canonical_modality(mod) in canon else len(canon), mod))
    channels = common[:2]
    has = {name: [p for p in patients if m.path(p, tp, "mask", name) is not None] for tp, name in LESIONS.items()}
    has["brain"] = [p for p in patients if all(m.path(p, tp, "mask", "brain") is not None for tp in ("pre", "post"))]
    n = len(patients)
    probes = [(p, m.images(p, "pre")[common[0]]) for p in patients[:PROBE_PATIENTS]] if common else []
    shares = [(p, background_share(path)) for p, path in probes]
    stripped = bool(shares) and all(share >= STRIPPED_SHARE for _, share in shares)
    share_text = ", ".join(f"{p} {100 * s:.0f}%" for p, s in shares)

    def count(name):
        return f"{len(has[name])} of {n} patients"

    lines = [
        f"# Config for the cohort {cohort_path}: written by `landmarkflow init` from its manifest",
        f"# ({n} patient(s)). Run: snakemake --cores N --configfile <this file>. Every key: config/README.md.",
        f"cohort: {json.dumps(cohort_path)}",
        "seed: 42                    # the same seed on the CPU gives the same landmarks",
        "demo:",
        "  activate: false           # a real cohort: nothing is generated",
        "preprocess:",
    ]
    if stripped:
        lines.append(f"  skull_strip: none         # the scans look skull-stripped ({share_text} of the voxels at the "
                     f"minimum); auto for whole-head scans")
    else:
        brains = count("brain")
        lines.append(f"  skull_strip: auto         # whole-head scans ({share_text or 'no image'} of the voxels at the "
                     f"minimum): the manifest's brain masks where given (both time points: {brains}), else an atlas-based mask")
    lines += [
        "agent:",
        f"  modalities: [{', '.join(channels)}]".ljust(28)
        + f"# at both time points for every patient: {', '.join(common) or 'none'} (at most two as channels)",
        "ants:",
        "  preset: quality           # the careful registration (the demo uses quick for its time budget)",
        "pin:",
        "  activate: false           # experimental: a GPU job per patient, not better than the registration",
    ]
    notes = []
    if len(has["resection"]) < n:
        notes.append(f"# {n - len(has['resection'])} of {n} patients have no resection mask: one is derived from "
                     f"the svf registration (lesions.derive; check results/<patient>/lesions/qc.png). With "
                     f"lesions.derive: false their guided agent is skipped and ANTs SyN runs without the cavity masked.")
    if len(has["tumor"]) < n:
        notes.append(f"# {n - len(has['tumor'])} of {n} patients have no tumour mask: one is derived from the svf "
                     f"registration (lesions.derive). With lesions.derive: false ANTs SyN does not leave the tumour "
                     f"out of its metric for them.")
    if not any(m.rows(p, "pre", "landmarks").shape[0] for p in patients):
        notes.append("# No pre-operative landmarks: nothing is scored; the report shows what needs no ground truth.")
    return "\n".join(lines + notes) + "\n"
