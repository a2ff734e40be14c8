"""Seeds x ensemble size x seeded starts, and the consensus, on the demo's patients (issue 14; not a test).

    .venv/bin/python benchmarks/ensemble_study.py export [--results results] [--out .scratch/data]
    python benchmarks/ensemble_study.py train --seeds 42,1,2 --ensemble 4 --out study.json [--data .scratch/data]
    .venv/bin/python benchmarks/ensemble_study.py report study.json

``export`` writes, per preprocessed patient of ``results/``, the arrays the study needs (both time points'
configured agent modalities, the pre-op one smoothed as at test time, as float16; masks; post-op, true pre-op
and ANTs SyN landmarks) to one small ``.npz``, so that ``train`` runs where only PyTorch, numpy and scipy are
installed (a GPU machine). ``train`` trains each patient's agents with the workflow's own
``patient_trainer`` (``ensemble`` members per landmark and variant, one batched job per patient and seed)
and redetects them with the workflow's code from the rigid start box and from a 10 mm box at ANTs' landmark,
pooling the first 1, 2 and K members. ``report`` prints the mean over seeds with its range, and the consensus
(``landmarkflow.consensus``) of ANTs with the agents.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def lesion(folder, timepoint, shape):
    """The mask the workflow used at ``timepoint`` (given or derived); an empty one where there is none."""
    mask = folder.lesion(timepoint)
    if mask is None:
        print(f"{folder.patient}: no {timepoint}-op lesion mask; exported empty", file=sys.stderr)
        return np.zeros(tuple(shape), bool)
    return mask


def export(args):
    from landmarkflow.imaging import spatial
    from landmarkflow.io.landmarks import read_landmarks
    from landmarkflow.cohort.preproc_folder import PreprocFolder
    import yaml

    agent = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["agent"]
    args.out.mkdir(parents=True, exist_ok=True)
    for pre_dir in sorted(args.results.glob("*/preproc")):
        f = PreprocFolder.in_workdir(pre_dir)  # the masks the workflow used, given or derived
        mods = f.resolve_modalities(agent.get("modalities", []), "agent.modalities")
        post, aff = f.stack("post", mods)
        pre, _ = f.stack("pre", mods, agent.get("test_smooth_mm", 1.0))
        ids = [str(x) for x in f.landmarks("post")["landmark"]]

        def vox(df):
            df = df.set_index("landmark").loc[ids]
            return spatial.world_to_voxel(df[["x", "y", "z"]].to_numpy(float), aff)

        ants = read_landmarks(args.results / f.patient / "landmarks" / "ants_syn.csv")
        np.savez_compressed(args.out / f"{f.patient}.npz", post=post.astype(np.float16), pre=pre.astype(np.float16),
                            brain=np.packbits(f.mask("post", "brain")), cavity=np.packbits(lesion(f, "post", post.shape[1:])),
                            tumour=np.packbits(lesion(f, "pre", post.shape[1:])), shape=np.array(post.shape[1:]), affine=aff,
                            ids=np.array(ids), target=vox(f.landmarks("post")), truth=vox(f.landmarks("pre")), ants=vox(ants))
        print(f"{args.out / f.patient}.npz")


def train(args):
    import torch
    import yaml

    from landmarkflow.imaging import spatial
    from landmarkflow.detect.agent.detect import redetect
    from landmarkflow.detect.search import pool, start_points
    from landmarkflow.detect.agent.pipeline import patient_trainer
    from landmarkflow.detect.agent.train import AgentConfig

    settings = {k: v for k, v in yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["agent"].items() if k != "device"}
    K = args.ensemble
    cfg = AgentConfig(**{**settings, "ensemble": K})
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for path in sorted(args.data.glob("*.npz")):
        d = np.load(path)
        shape = tuple(d["shape"])
        n = int(np.prod(shape))
        unpack = lambda a: np.unpackbits(a)[:n].reshape(shape).astype(bool)  # noqa: E731
        post, pre = d["post"].astype(np.float32), d["pre"].astype(np.float32)
        brain, cavity, tumour = unpack(d["brain"]), unpack(d["cavity"]), unpack(d["tumour"])
        aff = d["affine"]
        sp = spatial.spacing_of(aff)
        ids = [str(x) for x in d["ids"]]
        world = lambda v: spatial.voxel_to_world(np.asarray(v, float), aff).tolist()  # noqa: E731
        for seed in [int(s) for s in args.seeds.split(",")]:
            t0 = time.time()
            trainer, agents, specs, _ = patient_trainer(post, aff, brain, cavity, {lm: d["target"][i] for i, lm in enumerate(ids)},
                                                     path.stem, cfg, seed, dev)
            trainer.train(log_every=100)
            seconds = time.time() - t0
            for i, (lm, v) in enumerate(agents):
                li = ids.index(lm)
                nets = [trainer.network(i * K + j) for j in range(K)]
                truth = d["truth"][li]
                for mode, centre, box, max_shift in (("rigid", d["target"][li], cfg.box_mm, cfg.max_shift_mm),
                                                     ("seeded", d["ants"][li], cfg.seeded_box_mm, cfg.seeded_max_shift_mm)):
                    starts = start_points(centre, cfg.n_starts, box, sp, seed)
                    dets = [redetect(net, pre, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps,
                                     tumour if v == "guided" else None, sp, dev) for net in nets]
                    for k in sorted({1, 2, K} & set(range(1, K + 1))):
                        c = pool(dets[:k], sp).centre
                        fb = bool(np.linalg.norm((c - centre) * sp) > max_shift)
                        pos = centre if fb else c
                        rows.append(dict(patient=path.stem, landmark=lm, variant=v, seed=seed, k=k, mode=mode,
                                         error=float(np.linalg.norm((pos - truth) * sp)), fallback=int(fb), pos=world(pos),
                                         truth_w=world(truth), ants_w=world(d["ants"][li]), start_w=world(d["target"][li]),
                                         train_s=seconds))
            print(path.stem, seed, f"trained {len(specs)} agents in {seconds:.1f} s", flush=True)
            Path(args.out).write_text(json.dumps(rows))


def report(args):
    import pandas as pd

    from landmarkflow.detect.consensus import ConsensusConfig, decide

    d = pd.DataFrame(json.loads(Path(args.study).read_text()))
    d["over3"] = d["error"] > 3
    per_seed = d.groupby(["variant", "mode", "k", "seed"]).agg(mean=("error", "mean"), median=("error", "median"),
                                                                fallbacks=("fallback", "sum"), over3=("over3", "sum"))
    out = per_seed.groupby(["variant", "mode", "k"]).agg(mean=("mean", "mean"), mean_min=("mean", "min"), mean_max=("mean", "max"),
                                                         median=("median", "mean"), median_min=("median", "min"),
                                                         median_max=("median", "max"), fallbacks=("fallbacks", "mean"),
                                                         over3=("over3", "mean"))
    print(out.round(2).to_string())
    cfg, rows = ConsensusConfig(), []
    for (k, seed, patient, lm), g in d.groupby(["k", "seed", "patient", "landmark"]):
        r0 = g.iloc[0]
        truth, ants, start = (np.array(r0[c]) for c in ("truth_w", "ants_w", "start_w"))
        found = {f"{'agent' if r.mode == 'rigid' else 'seeded'}_{r.variant}": np.array(r.pos) for r in g.itertuples() if not r.fallback}
        for label, keys in (("agents", ("agent_baseline", "agent_guided")),
                            ("agents + seeded", ("agent_baseline", "agent_guided", "seeded_guided"))):
            dec = decide(ants, {m: found[m] for m in keys if m in found}, start, cfg)
            rows.append(dict(set=label, k=k, seed=seed, error=float(np.linalg.norm(dec.point - truth)),
                             ants=float(np.linalg.norm(ants - truth)), flag=dec.flag, overruled=dec.rule == "registration_overruled"))
    c = pd.DataFrame(rows)
    s = c.groupby(["set", "k", "seed"]).agg(mean=("error", "mean"), median=("error", "median"), worst=("error", "max"),
                                             flagged=("flag", "sum"), overruled=("overruled", "sum"))
    print("\nconsensus with ANTs SyN (ANTs alone: mean %.2f, median %.2f, largest %.2f mm)"
          % (c.groupby("seed")["ants"].mean().iloc[0], c.groupby("seed")["ants"].median().iloc[0], c["ants"].max()))
    print(s.groupby(["set", "k"]).agg(mean=("mean", "mean"), mean_min=("mean", "min"), mean_max=("mean", "max"),
                                      median=("median", "mean"), worst=("worst", "max"), flagged=("flagged", "mean"),
                                      overruled=("overruled", "mean")).round(2).to_string())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--out", type=Path, default=ROOT / ".scratch" / "data")
    p.set_defaults(func=export)
    p = sub.add_parser("train")
    p.add_argument("--seeds", default="42,1,2")
    p.add_argument("--ensemble", type=int, default=4)
    p.add_argument("--data", type=Path, default=ROOT / ".scratch" / "data")
    p.add_argument("--out", required=True)
    p.set_defaults(func=train)
    p = sub.add_parser("report")
    p.add_argument("study")
    p.set_defaults(func=report)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
