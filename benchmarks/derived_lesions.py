"""Derived lesion masks against the true ones (issue 27; a study, not a test).

    .venv/bin/python benchmarks/derived_lesions.py manifest DEMO_WORKDIR OUT_WORKDIR
    .venv/bin/python benchmarks/derived_lesions.py dice WORKDIR TRUTH_MANIFEST [--set key=value ...]
    .venv/bin/python benchmarks/derived_lesions.py errors WORKDIR [--methods a,b] [--bands-from TRUE_WORKDIR]

``manifest`` writes ``OUT_WORKDIR/config/cohort.tsv``: the demo workdir's manifest (its files generated, under
``DEMO_WORKDIR/resources/demo``) without the tumour and cavity rows, paths absolute. Run the workflow there
(``demo.activate: false``) and the masks are derived. ``dice`` prints, per patient and time point, the Dice
overlap and the volumes of the masks of ``WORKDIR/results/<patient>/lesions`` against the true masks that
``TRUTH_MANIFEST`` names (moved into the preprocessing frame as the preprocessing moves the scans); with
``--set``, the masks are derived again from the run's svf maps with those settings (no rerun of the
registration), to compare settings of the rule. ``errors`` prints each method's error (mean, median, by distance to the
cavity; with ``--bands-from``, the true cavity of another run) from the landmark files of one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def manifest(args):
    import pandas as pd

    from landmarkflow.core.files import write_table

    demo = Path(args.demo_workdir).resolve()
    table = pd.read_csv(demo / "config" / "cohort.tsv", sep="\t", dtype=str)
    table = table[~((table["kind"] == "mask") & table["name"].isin(["tumor", "resection"]))].copy()
    table["path"] = [str((demo / "config" / p).resolve()) for p in table["path"]]
    out = Path(args.out_workdir) / "config" / "cohort.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, out)
    print(f"{out}: {table['patient'].nunique()} patients, no tumour or cavity mask")


def true_mask(folder, m, patient: str, tp: str):
    """The manifest's lesion mask of a time point on the preprocessed grid (post-op: moved by ``post_to_pre``)."""
    from landmarkflow.cohort.manifest import LESIONS
    from landmarkflow.imaging.image import Image, read_image
    from landmarkflow.imaging.resample import resample_mask

    path = m.path(patient, tp, "mask", LESIONS[tp])
    if path is None:
        return None
    img = read_image(path, dtype=None)
    if tp == "post":
        img = Image(img.data, folder.post_to_pre @ img.affine)
    grid = folder.mask_image(tp, "brain")
    return resample_mask(img, grid.shape, grid.affine).data > 0


def dice(args):
    import pandas as pd
    import yaml

    from landmarkflow.cohort.manifest import TIMEPOINTS, load_manifest
    from landmarkflow.cohort.preproc_folder import PreprocFolder
    from landmarkflow.imaging import spatial
    from landmarkflow.imaging.image import read_image
    from landmarkflow.preprocess import lesions

    m = load_manifest(args.truth_manifest)
    settings = {}
    for pair in args.set or []:
        key, _, value = pair.partition("=")
        settings[key] = yaml.safe_load(value)
    cfg = lesions.LesionSettings(**settings)
    rows = []
    for res in sorted(Path(args.workdir, "results").glob("*/lesions")):
        patient = res.parent.name
        folder = PreprocFolder(res.parent / "preproc", lesions=res)
        for tp in TIMEPOINTS:
            truth = true_mask(folder, m, patient, tp)
            if settings:
                err = read_image(res.parent / "svf" / lesions.SOURCE_MAPS[tp])
                derived = lesions.derive_mask(err.data, folder.mask(tp, "brain"), spatial.spacing_of(err.affine), cfg)
            else:
                derived = folder.lesion(tp)
            if truth is None or derived is None:
                continue
            ml = float(np.prod(spatial.spacing_of(folder.mask_image(tp, "brain").affine))) / 1000
            rows.append({"patient": patient, "timepoint": tp, "dice": lesions.dice(derived, truth),
                         "derived_ml": derived.sum() * ml, "true_ml": truth.sum() * ml,
                         "inside_truth": float((derived & truth).sum() / max(derived.sum(), 1))})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(table.groupby("timepoint")["dice"].agg(["mean", "min", "max"]).to_string(float_format=lambda x: f"{x:.3f}"))


def errors(args):
    """Mean, median and by-band error of each method's landmark files in a workdir (one run: the registrations)."""
    import pandas as pd

    from landmarkflow.cohort.preproc_folder import PreprocFolder
    from landmarkflow.evaluate.metrics import cavity_distances
    from landmarkflow.io.landmarks import points_of, read_landmarks

    work = Path(args.workdir)
    folders = sorted(work.glob("results/*/preproc"))
    if args.bands_from:
        band_dirs = [Path(args.bands_from) / "results" / f.parent.name / "preproc" for f in folders]
        bands = cavity_distances(band_dirs)
    else:  # the run's own cavity, given or derived
        bands = cavity_distances(folders, [PreprocFolder.in_workdir(f).lesions for f in folders])
    bands = bands.set_index(["patient", "landmark"])
    rows = []
    for f in folders:
        folder = PreprocFolder(f)
        truth = read_landmarks(folder.truth_path()).set_index("landmark")
        for method in args.methods.split(","):
            p = f.parent / "landmarks" / f"{method}.csv"
            if not p.exists():
                continue
            lm = read_landmarks(p)
            gt = points_of(truth.loc[lm["landmark"].astype(str)].reset_index())
            for lid, e in zip(lm["landmark"].astype(str), np.linalg.norm(points_of(lm) - gt, axis=1)):
                rows.append({"method": method, "patient": folder.patient, "landmark": lid, "error_mm": e,
                             "band": bands.loc[(folder.patient, lid), "band"]})
    df = pd.DataFrame(rows)
    table = df.groupby("method", sort=False)["error_mm"].agg(["mean", "median", "count"])
    table = table.join(df.pivot_table(index="method", columns="band", values="error_mm", aggfunc="mean"))
    print(table.to_string(float_format=lambda x: f"{x:.2f}"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("manifest")
    p.add_argument("demo_workdir")
    p.add_argument("out_workdir")
    p.set_defaults(func=manifest)
    p = sub.add_parser("dice")
    p.add_argument("workdir")
    p.add_argument("truth_manifest")
    p.add_argument("--set", action="append", help="a lesions setting to derive the masks again with: key=value")
    p.set_defaults(func=dice)
    p = sub.add_parser("errors")
    p.add_argument("workdir")
    p.add_argument("--methods", default="identity,ants_syn,ants_syn_nomask,svf")
    p.add_argument("--bands-from", help="a workdir whose given cavity masks give the distance bands")
    p.set_defaults(func=errors)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
