"""Command line: ``landmarkflow <command>``; the same functions the workflow's scripts call."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .core import config, layout
from .core.errors import InputError
from .core.logutil import setup_cli
from .demo.synthetic import DEMO_DIR


def _demo(args) -> None:
    from .core.files import write_table
    from .demo import synthetic

    for patient in args.patients:
        synthetic.make_patient(patient, args.out, seed=args.seed, n_landmarks=args.landmarks,
                               near_cavity=args.near_cavity, acquisition=args.acquisition)
    if args.manifest:
        write_table(synthetic.manifest_rows(args.patients, args.out, args.manifest.parent), args.manifest)


def _validate(args) -> None:
    from .cohort.manifest import load_manifest
    from .cohort.validation import validate_contents

    settings = _checked_config(args.configfile, args.manifest) if args.configfile else None
    landmarks = settings["landmarks"] if settings is not None else {}  # where the command line gives no value
    annotator = args.annotator if args.annotator is not None else landmarks.get("annotator")
    unmatched = args.unmatched_truth or landmarks.get("unmatched_truth") or config.default("landmarks", "unmatched_truth")
    preference = settings["reference_modality"] if settings is not None else config.default(None, "reference_modality")
    m = load_manifest(args.manifest, annotator=annotator, preference=preference)
    if settings is not None:
        m.check_modalities({f"{key}.modalities": settings[key]["modalities"]
                            for key in ("agent", "pin", "ants", "svf", "radiomics")})
    m = validate_contents(m, unmatched)
    if settings is not None:
        print(f"{', '.join(map(str, args.configfile))}: the config passed its checks")
    print(f"{args.manifest}: {len(m.patients)} patient(s), {len(m.table)} file(s), all checks passed")
    for patient in m.patients:
        print(f"{patient}: reference modality {m.reference_choice(patient)[1]}")
    for w in m.warnings:
        print(f"warning: {w}")


def _checked_config(files, manifest) -> dict:
    """The config files read (:func:`.config.load`: a clear message for a file that is not plain YAML), merged in
    their order as Snakemake merges them, checked against the schema and its relations, completed with the
    defaults; ``cohort`` defaults to the manifest being validated."""
    from .detect.consensus import ConsensusConfig

    settings: dict = {}
    for f in files:
        config.merge(settings, config.load(f))
    settings.setdefault("cohort", str(manifest))
    try:
        config.check(settings)
        config.complete(settings)
        ConsensusConfig.from_settings(settings["consensus"])  # what the workflow checks when it starts
        config.check_relations(settings)
    except (InputError, ValueError) as err:
        raise InputError(f"config ({', '.join(map(str, files))}): {err}") from None
    return settings


def _seeds(args) -> None:
    from .evaluate import seeds

    # the config files the runs merge are read first (SeedRuns, config.load): a file that is not plain YAML is
    # named with its line before any run (Snakemake would say only "not valid JSON or YAML")
    try:
        table = seeds.run_seeds(args.seeds.split(","), args.cores, args.snakemake_args, args.out, args.configfile,
                                args.parallel)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"accuracy over seeds {args.seeds} (each seed's results in {args.out}/seed-S/results/; "
          f"written to {args.out}/summary.tsv):")
    print(seeds.format_table(table))


def _brats_export(args) -> None:
    from .cohort.manifest import load_manifest
    from .present.brats_export import export_cohort

    written = export_cohort(load_manifest(args.manifest), args.results, args.out, args.method, args.registration)
    print(f"wrote {len(written)} case(s) to {args.out}: <case>.csv ({args.method}, BraTS-Reg's LPS) and "
          f"<case>_detj.nii.gz ({args.registration}, on the baseline's grid)")


def _init(args) -> None:
    from pathlib import Path

    from .cohort.manifest import load_manifest
    from .cohort.starter import starter_config
    from .core.files import atomic_path

    out = Path(args.out or Path("config") / f"{Path(args.manifest).stem}.yaml")
    if out.exists() and not args.force:
        raise InputError(f"{out}: exists already; choose another --out or add --force to overwrite it")
    # the manifest by its absolute path: the config then works from wherever Snakemake runs
    text = starter_config(load_manifest(args.manifest), str(Path(args.manifest).resolve()))
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text)
    print(f"wrote {out}; check it, then: snakemake --cores N --configfile {out}")


def _bids(args) -> None:
    from .io import bids

    df = bids.make_manifest(args.dataset, args.out, args.pre_session, args.post_session, args.derivatives)
    print(f"wrote {args.out / 'cohort.tsv'}: {df['patient'].nunique()} patient(s), {len(df)} file(s); check it with "
          f"`landmarkflow validate {args.out / 'cohort.tsv'}`, then `landmarkflow init {args.out / 'cohort.tsv'}`")


def _brats(args) -> None:
    from .io import brats

    df = brats.make_manifest(args.folder, args.out, annotator=args.annotator)
    print(f"wrote {args.out}/cohort.tsv: {df['patient'].nunique()} case(s), {len(df)} row(s)")


def main(argv=None) -> int:
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="landmarkflow", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate synthetic demo patients from the MNI152 template")
    p.add_argument("patients", nargs="+", help="patient identifiers, e.g. demo01 demo02")
    p.add_argument("--out", type=Path, default=Path(DEMO_DIR))
    p.add_argument("--seed", type=int, default=config.default("demo", "seed"))
    p.add_argument("--landmarks", type=int, default=config.default("demo", "landmarks"),
                   help="salient landmarks per patient, 6-20 mm from the cavity")
    p.add_argument("--near-cavity", type=int, default=config.default("demo", "near_cavity"),
                   help="more landmarks per patient, 2-5 mm from the cavity")
    p.add_argument("--acquisition", choices=("standard", "hard"), default=config.default("demo", "acquisition"),
                   help="the post-op acquisition")
    p.add_argument("--manifest", type=Path, help="also write a manifest for these patients here")
    p.set_defaults(func=_demo)

    p = sub.add_parser("validate", help="check a cohort manifest and every file it names")
    p.add_argument("manifest", type=Path)
    p.add_argument("--annotator", help="the post-op annotator whose landmarks are redetected (config landmarks.annotator)")
    p.add_argument("--unmatched-truth", choices=("error", "warn"),
                   help="a ground truth whose identifiers match none of the post-op ones (config landmarks.unmatched_truth; "
                        f"default {config.default('landmarks', 'unmatched_truth')})")
    p.add_argument("--configfile", type=Path, action="append",
                   help="also check this config file (plain YAML, the schema's keys and values, the modalities the "
                        "cohort has) and take landmarks.annotator and landmarks.unmatched_truth from it; repeated, the "
                        "files are merged in their order, as Snakemake merges them (give config/config.yaml first "
                        "when the workflow's own config lies under yours)")
    p.set_defaults(func=_validate)

    p = sub.add_parser("brats-manifest", help="turn a BraTS-Reg folder into a manifest (landmarks converted to RAS)")
    p.add_argument("folder", type=Path, help="a BraTSReg_xxx folder or a folder of them")
    p.add_argument("--out", type=Path, required=True, help="folder for cohort.tsv and the converted landmark files")
    p.add_argument("--annotator", default="expert", help="name given to the landmark files (default: expert)")
    p.set_defaults(func=_brats)

    p = sub.add_parser("bids-manifest", help="turn a longitudinal BIDS dataset into a manifest (two sessions: pre, post)",
                       description="Images from the raw data (T1w with a ce- entity: t1ce; T1w: t1; T2w: t2; FLAIR: "
                                   "flair), landmarks and masks from derivatives/landmarkflow/ (README, 'BIDS'); paths "
                                   "relative to --out, nothing copied.")
    p.add_argument("dataset", type=Path, help="the BIDS dataset's folder (with dataset_description.json)")
    p.add_argument("--out", type=Path, required=True, help="folder for cohort.tsv")
    p.add_argument("--pre-session", help="the pre-operative session's label (default: guessed: pre, preop, baseline; "
                                         "or the first of two numbered or dated sessions)")
    p.add_argument("--post-session", help="the post-operative session's label (default: guessed likewise)")
    p.add_argument("--derivatives", type=Path, help="the folder of landmarks and masks (default "
                                                     "DATASET/derivatives/landmarkflow)")
    p.set_defaults(func=_bids)

    p = sub.add_parser("brats-export", help="write the results in BraTS-Reg's form (landmark CSV, Jacobian determinant)",
                       description="Per case of MANIFEST: <case>.csv, the method's landmarks in BraTS-Reg's convention "
                                   "(Landmark,X,Y,Z in LPS mm), and <case>_detj.nii.gz, the registration's Jacobian "
                                   "determinant on the grid of the baseline scan as given.")
    p.add_argument("manifest", type=Path, help="the cohort's manifest (as given to the workflow)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--results", type=Path, default=Path("."), help="the folder that holds results/ (default .)")
    p.add_argument("--method", default="consensus", help="whose landmarks (default consensus)")
    p.add_argument("--registration", default="ants_syn", choices=["ants_syn", "svf"], help="whose Jacobian (default ants_syn)")
    p.set_defaults(func=_brats_export)

    p = sub.add_parser("init", help="write a commented config for a real cohort from its manifest",
                       description="Reads MANIFEST and writes a config for it: the modalities every patient has at both "
                                   "time points, the masks there are and what their absence means, skull stripping "
                                   "from the images, and the defaults for real cohorts (demo off, PIN off, the careful "
                                   "ANTs preset), each with its reason as a comment.")
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, help="the config to write (default config/<manifest name>.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_init)

    p = sub.add_parser("seeds", help="run the workflow once per seed and summarise accuracy over the seeds",
                       description="Runs the workflow of this folder once per seed (--config seed=S; the demo cohort "
                                   "keeps demo.seed), each in its own working folder OUT/seed-S/ with its own results/ "
                                   "and Snakemake lock, so that seeds can run at once (--parallel, or on a cluster with "
                                   "-- --profile ...) and never overwrite each other, and writes OUT/summary.tsv: per "
                                   "method the mean over seeds with its min-max range. Arguments after -- go to snakemake.")
    p.add_argument("--seeds", default="42,1,2", help="comma-separated workflow seeds (default 42,1,2)")
    p.add_argument("--cores", type=int, default=2, help="cores of each seed's run (default 2)")
    p.add_argument("--configfile", default="config/config.yaml", help="the config file (default config/config.yaml)")
    p.add_argument("--out", default=layout.SEEDS, help=f"the seeds' folder (default {layout.SEEDS})")
    p.add_argument("--parallel", action="store_true", help="start every seed's run at once (default: one after the other)")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="-- then arguments for snakemake")
    p.set_defaults(func=_seeds)

    p = sub.add_parser("config-keys", help="print every config key with its default and meaning (from the schema)")
    p.set_defaults(func=lambda args: print(config.reference_table(), end=""))

    args = parser.parse_args(argv)
    if getattr(args, "snakemake_args", None) and args.snakemake_args[0] == "--":
        args.snakemake_args = args.snakemake_args[1:]
    setup_cli(args.verbose)
    try:
        args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
