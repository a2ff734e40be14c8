"""The agents' levers over seeds on a preprocessed demo cohort (issue 25; a study, not a test).

    .venv/bin/python benchmarks/agent_study.py run WORKDIR --name NAME --seeds 42,1,2 [--set key=value ...]
        [--variants guided] [--detect LABEL:key=value,key=value ...] [--out study.tsv]
    .venv/bin/python benchmarks/agent_study.py report study.tsv [--by-band]

``WORKDIR`` is a workflow folder whose ``results/<patient>/preproc`` and ``landmarks/ants_syn.csv`` exist (the
demo run up to ANTs); the agents use the lesion masks of ``results/<patient>/lesions`` (given and derived)
when it exists, as the workflow does. ``--bands-from OTHER`` takes the distance to the cavity from another
workdir's given masks (a study whose masks were withheld). ``run`` trains each patient's agents with the workflow's own ``train_agents`` (the demo
config's agent settings, ``--set`` on top: ``--set fine_factor=0 --set early_stop=false``), redetects them with
the workflow's ``redetect_landmarks`` (every trained variant, and ``seeded`` from ANTs SyN's landmarks), again
for each ``--detect`` set of detection settings (no retraining), and appends one row per landmark, method and
detection to ``--out``: the error against the ground truth, the initial error, ANTs SyN's error, the distance
to the cavity, the fallback, the seconds and updates of the training. ``report`` prints, per study name,
detection and method: the mean over seeds of each seed's mean and median error with the min-max range, the
share of landmarks where the method beats ANTs SyN, the fallbacks, and the training time per patient.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


def _settings(pairs) -> dict:
    out = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        out[key.strip()] = _value(value)
    return out


def run(args):
    import pandas as pd
    import yaml

    from landmarkflow.cohort.preproc_folder import PreprocFolder
    from landmarkflow.core.config import AGENT_DETECTION_KEYS, RUN_ONLY_KEYS, complete
    from landmarkflow.detect.agent.pipeline import redetect_landmarks, train_agents
    from landmarkflow.detect.agent.train import AgentConfig
    from landmarkflow.evaluate.metrics import cavity_distances
    from landmarkflow.io.landmarks import read_landmarks

    workdir = Path(args.workdir)
    config = complete(yaml.safe_load((workdir / "config" / "config.yaml").read_text()))
    agent = {k: v for k, v in config["agent"].items() if k != "device" and k not in RUN_ONLY_KEYS}
    agent.update(_settings(args.set))
    cfg = AgentConfig(**agent)
    detections = {"default": {}}
    for spec in args.detect or []:
        label, _, pairs = spec.partition(":")
        detections[label] = _settings(pairs.split(","))
    folders = sorted(f for f in (workdir / "results").glob("*/preproc")
                     if not args.patients or f.parent.name in args.patients.split(","))
    if args.bands_from:  # the distance to the true cavity of another run (a study with the masks withheld)
        truth_dirs = [Path(args.bands_from) / "results" / f.parent.name / "preproc" for f in folders]
        bands = cavity_distances(truth_dirs).set_index(["patient", "landmark"])
    else:
        bands = cavity_distances(folders, [PreprocFolder.in_workdir(f).lesions for f in folders]).set_index(["patient", "landmark"])
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for pre_dir in folders:
            folder = PreprocFolder.in_workdir(pre_dir)
            patient = folder.patient
            truth = read_landmarks(folder.truth_path()).set_index("landmark")
            start = folder.landmarks("post").set_index("landmark")
            ants_csv = workdir / "results" / patient / "landmarks" / "ants_syn.csv"
            ants = read_landmarks(ants_csv).set_index("landmark")
            with tempfile.TemporaryDirectory(prefix="agent_study_") as tmp:
                if args.keep:  # the trained agents stay, for detections without retraining later
                    tmp = Path(args.keep) / args.name / f"seed-{seed}" / patient
                    tmp.mkdir(parents=True, exist_ok=True)
                t0 = time.time()
                states = train_agents(pre_dir, cfg, seed, Path(tmp) / "trained", device=args.device, threads=args.threads,
                                      variants=args.variants.split(",") if args.variants else None,
                                      lesions_dir=folder.lesions)
                train_s = time.time() - t0
                updates = {f"{s['landmark']}_{s['variant']}": s["updates"] for s in states}
                variants = sorted({s["variant"] for s in states if s["variant"] != "fine"}) + ["seeded"]
                for label, detection in detections.items():
                    for variant in variants:
                        det = {k: v for k, v in {**agent, **detection}.items() if k in AGENT_DETECTION_KEYS}
                        df = redetect_landmarks(pre_dir, Path(tmp) / "trained", variant, seed, Path(tmp) / "p.csv",
                                                Path(tmp) / "e.tsv", Path(tmp) / "t.tsv", device=args.device,
                                                threads=args.threads, detection=det,
                                                seed_landmarks=ants_csv if variant == "seeded" else None,
                                                lesions_dir=folder.lesions)
                        for r in df.itertuples():
                            lid = str(r.landmark)
                            p = np.array([r.x, r.y, r.z])
                            coarse = np.array([getattr(r, f"coarse_{a}", np.nan) for a in "xyz"])
                            gt = truth.loc[lid, ["x", "y", "z"]].to_numpy(float)
                            rows.append({
                                "name": args.name, "detection": label, "seed": seed, "patient": patient, "landmark": lid,
                                "method": "agent_seeded" if variant == "seeded" else f"agent_{variant}",
                                "x": r.x, "y": r.y, "z": r.z,
                                "error_mm": float(np.linalg.norm(p - gt)),
                                "coarse_error_mm": float(np.linalg.norm(coarse - gt)) if np.isfinite(coarse).all() else np.nan,
                                "initial_mm": float(np.linalg.norm(start.loc[lid, ["x", "y", "z"]].to_numpy(float) - gt)),
                                "ants_mm": float(np.linalg.norm(ants.loc[lid, ["x", "y", "z"]].to_numpy(float) - gt)),
                                "cavity_mm": float(bands.loc[(patient, lid), "cavity_mm"]),
                                "band": bands.loc[(patient, lid), "band"],
                                "fallback": int(getattr(r, "fallback", 0) or 0),
                                "refined": getattr(r, "refined", np.nan),
                                "train_s": round(train_s, 1),
                                "updates": updates.get(f"{lid}_{variant}", np.nan),
                                "fine_updates": updates.get(f"{lid}_fine", np.nan),
                            })
            print(f"{args.name} seed {seed} {patient}: trained in {train_s:.0f} s", flush=True)
            out = pd.DataFrame(rows)
            header = not Path(args.out).exists()
            out.to_csv(args.out, sep="\t", index=False, mode="a", header=header, float_format="%.4f")
            rows = []


def consensus_rows(df, workdir: Path, settings: dict, label: str):
    """The consensus of every (study, detection, seed, patient, landmark) from the study's agents and the workdir's
    registrations (ANTs SyN, svf), with the consensus settings ``settings``, as rows like the study's."""
    import pandas as pd

    from landmarkflow.cohort.preproc_folder import PreprocFolder
    from landmarkflow.detect.consensus import ConsensusConfig, decide
    from landmarkflow.io.landmarks import read_landmarks

    cfg = ConsensusConfig.from_settings(settings)
    regs, truths, starts = {}, {}, {}
    for patient in df["patient"].unique():
        lm = workdir / "results" / patient / "landmarks"
        regs[patient] = {m: read_landmarks(lm / f"{m}.csv").set_index("landmark") for m in cfg.registrations
                         if (lm / f"{m}.csv").exists()}
        folder = PreprocFolder(workdir / "results" / patient / "preproc")
        truths[patient] = read_landmarks(folder.truth_path()).set_index("landmark")
        starts[patient] = folder.landmarks("post").set_index("landmark")
    rows = []
    for key, g in df.groupby(["name", "detection", "seed", "patient", "landmark"], sort=False):
        patient, lid = key[3], key[4]
        point = {m: t.loc[lid, ["x", "y", "z"]].to_numpy(float) for m, t in regs[patient].items()}
        others = {r.method: np.array([r.x, r.y, r.z]) for r in g.itertuples() if not r.fallback and r.method in cfg.methods}
        start = starts[patient].loc[lid, ["x", "y", "z"]].to_numpy(float)
        dec = decide(point.get(cfg.registration), others, start, cfg, second=point.get(cfg.second))
        first = g.iloc[0]
        rows.append({**first.to_dict(), "method": f"consensus{label}", "x": dec.point[0], "y": dec.point[1],
                     "z": dec.point[2], "fallback": 0, "rule": dec.rule, "flag": int(dec.flag),
                     "error_mm": float(np.linalg.norm(dec.point - truths[patient].loc[lid, ["x", "y", "z"]].to_numpy(float)))})
    extra = []
    for m in cfg.registrations:  # the registrations themselves, for comparison
        for key, g in df.drop_duplicates(["name", "detection", "seed", "patient", "landmark"]).groupby(["patient", "landmark"]):
            p = regs[key[0]][m].loc[key[1], ["x", "y", "z"]].to_numpy(float)
            err = float(np.linalg.norm(p - truths[key[0]].loc[key[1], ["x", "y", "z"]].to_numpy(float)))
            extra += [{**r._asdict(), "method": m, "error_mm": err, "fallback": 0} for r in g.itertuples(index=False)]
    return pd.concat([pd.DataFrame(rows), pd.DataFrame(extra)], ignore_index=True)


def report(args):
    import pandas as pd

    df = pd.read_csv(args.study, sep="\t", dtype={"landmark": str})
    parts = [df]
    for i, spec in enumerate(args.consensus or []):
        label = f"[{spec}]" if spec else ""
        parts.append(consensus_rows(df, Path(args.workdir), _settings(spec.split(",")) if spec else {}, label))
    extra = pd.concat(parts[1:], ignore_index=True) if len(parts) > 1 else df.iloc[:0]
    if len(extra):
        extra = extra.drop_duplicates(["name", "detection", "seed", "patient", "landmark", "method"])
    ants = df.drop_duplicates(["name", "seed", "patient", "landmark"]).assign(method="ants_syn", error_mm=lambda d: d["ants_mm"],
                                                                                fallback=0, detection="-")
    all_rows = pd.concat([df, extra[~extra["method"].isin(["ants_syn"])], ants], ignore_index=True)
    keys = ["name", "detection", "method"] + (["band"] if args.by_band else [])
    lines = ["| " + " | ".join(keys) + " | mean (mm) [range] | median (mm) [range] | better than ants_syn | fallbacks | "
             "train s per patient |", "| " + " --- |" * (len(keys) + 5)]
    for key, g in all_rows.groupby(keys, sort=False):
        per_seed = g.groupby("seed")["error_mm"].agg(["mean", "median"])
        better = float((g["error_mm"] < g["ants_mm"]).mean()) if key[2] != "ants_syn" else np.nan
        train = g.drop_duplicates(["seed", "patient"])["train_s"].mean() if key[2] != "ants_syn" else np.nan
        lines.append("| " + " | ".join(map(str, key)) +
                     f" | {per_seed['mean'].mean():.2f} [{per_seed['mean'].min():.2f}-{per_seed['mean'].max():.2f}]"
                     f" | {per_seed['median'].mean():.2f} [{per_seed['median'].min():.2f}-{per_seed['median'].max():.2f}]"
                     f" | {better:.0%} | {int(g['fallback'].sum())}/{len(g)} | {train:.0f} |")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("workdir")
    p.add_argument("--name", required=True)
    p.add_argument("--seeds", default="42,1,2")
    p.add_argument("--set", action="append", help="an agent setting over the workdir's config: key=value")
    p.add_argument("--detect", action="append", help="LABEL:key=value,... more detection settings (no retraining)")
    p.add_argument("--variants", help="comma-separated variants to train (default: the patient's all)")
    p.add_argument("--patients", help="comma-separated patients (default: every preprocessed one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="agent_study.tsv")
    p.add_argument("--bands-from", help="a workdir whose preprocessed cavity masks give the distance bands "
                   "(the run with the true masks, for a study whose masks were withheld)")
    p.add_argument("--keep", help="a folder to keep the trained agents in (<name>/seed-<S>/<patient>/trained)")
    p.set_defaults(func=run)
    p = sub.add_parser("report")
    p.add_argument("study")
    p.add_argument("--by-band", action="store_true")
    p.add_argument("--workdir", help="the study's workdir, for --consensus (its registrations' landmarks)")
    p.add_argument("--consensus", action="append",
                   help="add the consensus with these settings (key=value,...; '' = the defaults) and the registrations")
    p.set_defaults(func=report)
    args = parser.parse_args(argv)
    from landmarkflow.core.logutil import setup_cli

    setup_cli()
    args.func(args)


if __name__ == "__main__":
    main()
