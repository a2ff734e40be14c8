"""Why PIN fails (issue 16): where does a patient-specific PIN stop localising? (a measurement, not a test)

    .venv/bin/python benchmarks/pin_diagnosis.py [--results results] [--seeds 42,1,2] [--set key=value ...]

For every landmark of the demo's preprocessed patients (``results/<patient>/preproc``), it trains the PIN
as ``train_pin`` does (config ``pin`` section, overrides with ``--set``, e.g. ``--set input=3d``), and
localises the landmark from the 20 fixed starts of a 50 mm box centred on the true position in:

  post     the post-op scan it was trained on;
  moved    a rigidly moved copy of it (4 degrees about a random axis, a 3 mm shift), re-noised;
  acquired a copy of it with acquisition changes (Gaussian smoothing 1 mm, gamma 0.8, noise);
  pre      the pre-op scan (the real task, truth = the pre-op landmark), starts centred on the
           rigidly aligned post-op position as in the workflow (so the error is comparable with
           ``identity``), with and without ``--smooth-mm`` test-time smoothing.

Per condition: the mean and median error of the prediction (mean of the end points, as PIN predicts),
the share of end points within 2 mm of the truth, and, for pre, the share of landmarks better than
identity. Means over landmarks and seeds, with the per-seed range.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy import ndimage
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from landmarkflow.imaging import spatial
from landmarkflow.detect.search import start_points
from landmarkflow.detect.augment import augmented_versions
from landmarkflow.core.device import seed_for
from landmarkflow.detect.pin import PinConfig, PinTrainer, localise
from landmarkflow.cohort.preproc_folder import PreprocFolder

ROOT = Path(__file__).resolve().parents[1]


def rigid_copy(vol: np.ndarray, target, rng, spacing):
    """(vol rigidly moved about the volume centre, the moved target) - vol (C, X, Y, Z), isotropic-ish grid."""
    rot = Rotation.from_rotvec(np.deg2rad(4.0) * (lambda v: v / np.linalg.norm(v))(rng.normal(size=3))).as_matrix()
    shift = rng.choice([-1, 1], 3) * np.array([3.0, 2.0, 1.5]) / np.asarray(spacing)
    c = (np.asarray(vol.shape[1:]) - 1) / 2
    # output voxel q samples input voxel R^T (q - c - shift) + c; a point p moves to R (p - c) + c + shift
    inv = rot.T
    offset = c - inv @ (c + shift)
    out = np.stack([ndimage.affine_transform(ch, inv, offset, order=1) for ch in vol])
    moved = rot @ (np.asarray(target, float) - c) + c + shift
    return out, moved


def renoise(vol: np.ndarray, rng, level: float = 0.03) -> np.ndarray:
    scale = np.percentile(vol[vol > 0], 99) if (vol > 0).any() else 1.0
    return vol + rng.normal(0, level * scale, vol.shape).astype(np.float32) * (vol > 0)


def acquired_copy(vol: np.ndarray, rng) -> np.ndarray:
    out = np.stack([ndimage.gaussian_filter(ch, 1.0) for ch in vol])
    scale = np.percentile(out[out > 0], 99)
    out = (np.clip(out, 0, None) / scale) ** 0.8 * scale
    return renoise(out, rng, 0.04).astype(np.float32)


def filled(vol: np.ndarray, brain, lesion) -> np.ndarray:
    """The pre-op scan with its tumour (grown by a voxel) set to the brain's median, channel by channel: what
    the training copies with a filled cavity look like, without their texture."""
    if lesion is None or not lesion.any():
        return vol
    grown = ndimage.binary_dilation(lesion, iterations=1)
    out = vol.copy()
    for c in range(len(out)):
        out[c][grown] = np.median(vol[c][brain & ~grown])
    return out


def errors(det_centre, det_ends, truth, spacing):
    sp = np.asarray(spacing)
    err = float(np.linalg.norm((det_centre - truth) * sp))
    within = float(np.mean(np.linalg.norm((det_ends - truth) * sp, axis=1) <= 2.0))
    return err, within


def patients(args, cfg):
    """Per patient: the PIN modalities of both time points, masks, affine, landmark voxels (post-op, true pre-op)."""
    if args.npz:
        for path in sorted(args.npz.glob("*.npz")):
            yield dict(np.load(path)) | {"patient": path.stem}
        return
    folders = [PreprocFolder.in_workdir(p) for p in sorted(args.results.glob("*/preproc")) if (p / "preproc.json").exists()]
    if not folders:
        sys.exit(f"no preprocessed patients under {args.results} (run `make demo` first)")
    for folder in folders:
        mods = folder.resolve_modalities(cfg.modalities, "pin.modalities")
        post, affine = folder.stack("post", mods)
        pre, _ = folder.stack("pre", mods)
        ids = [str(x) for x in folder.landmarks("post")["landmark"]]
        truth = folder.landmarks("pre").set_index("landmark").loc[ids]
        yield {"patient": folder.patient, "post": post, "pre": pre, "affine": affine, "ids": np.array(ids),
               "brain": folder.mask("post", "brain"), "cavity": folder.lesion("post"), "pre_brain": folder.mask("pre", "brain"),
               "tumour": folder.lesion("pre"), "target": np.stack([folder.target(lm, affine)[1] for lm in ids]),
               "truth": spatial.world_to_voxel(truth[["x", "y", "z"]].to_numpy(float), affine)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--set", action="append", default=[], help="pin setting override, key=value (YAML value)")
    ap.add_argument("--smooth-mm", type=float, default=1.0, help="test-time smoothing of the pre-op scan (sigma, mm)")
    ap.add_argument("--near-mm", type=float, default=20.0, help="edge of the smaller test start box (mm)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export", type=Path, help="write the patients' arrays (.npz) here and stop (for a machine without NIfTI readers)")
    ap.add_argument("--npz", type=Path, help="read the patients from this folder of --export files instead of --results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = yaml.safe_load(args.config.read_text())["pin"]
    for kv in args.set:
        k, v = kv.split("=", 1)
        settings[k] = yaml.safe_load(v)
    cfg = PinConfig.from_settings(settings)
    data = list(patients(args, cfg))
    if args.export:
        args.export.mkdir(parents=True, exist_ok=True)
        for d in data:
            arrays = {k: (v.astype(np.float16) if k in ("post", "pre") else v) for k, v in d.items() if k != "patient"}
            np.savez_compressed(args.export / f"{d['patient']}.npz", **arrays)  # images as float16: rounding 5e-4
        print(f"wrote {len(data)} patients to {args.export}")
        return
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"PIN diagnosis: {len(data)} patients, seeds {seeds}, settings {' '.join(args.set) or 'as configured'}, {dev}")
    sm = f"pre_smooth{args.smooth_mm:g}"
    near = f"pre_near{args.near_mm:g}_median"
    conds = ["post", "moved", "acquired", "pre", sm, "pre_median", near, "pre_tumour_filled"]
    per_seed = {c: [] for c in conds}
    better = {c: [] for c in conds}
    within = {c: [] for c in conds}
    initial_all = []
    for seed in seeds:
        errs = {c: [] for c in conds}
        for d in data:
            post, affine, pre = d["post"].astype(np.float32), d["affine"], d["pre"].astype(np.float32)
            sp = spatial.spacing_of(affine)
            pre_s = ndimage.gaussian_filter(pre, (0, *(args.smooth_mm / np.asarray(sp))))
            brain, cavity = d["brain"], d["cavity"]
            pre_filled = filled(pre, d["pre_brain"], d["tumour"])
            for li, lm in enumerate(str(x) for x in d["ids"]):
                target, t_pre = d["target"][li], d["truth"][li]
                s = seed_for(seed, str(d["patient"]), lm, "pin")
                versions = augmented_versions(post, brain, cavity, cfg.versions, np.random.default_rng(s), cfg.fill_cavity)
                trainer = PinTrainer(versions, target, cfg, s, dev, sp)
                trainer.train(log_every=10**9)
                net = trainer.net
                rng = np.random.default_rng(s + 1)
                moved, moved_target = rigid_copy(post, target, rng, sp)
                moved = renoise(moved, rng)
                cases = {"post": (post, target, target), "moved": (moved, moved_target, moved_target),
                         "acquired": (acquired_copy(post, rng), target, target)}
                cases["pre"] = (pre, target, t_pre)
                cases[sm] = (pre_s, target, t_pre)
                cases["pre_tumour_filled"] = (pre_filled, target, t_pre)
                initial = float(np.linalg.norm((target - t_pre) * np.asarray(sp)))
                if seed == seeds[0]:
                    initial_all.append(initial)
                for c, (vol, centre, truth) in cases.items():
                    starts = start_points(np.asarray(centre), cfg.n_starts, cfg.box_mm, sp, seed)
                    det = localise(net, cfg, vol, starts, sp, dev)
                    e, w = errors(det.centre, det.ends, truth, sp)
                    errs[c].append(e)
                    within[c].append(w)
                    if c == "pre":  # the same network and scan, other test-time rules: the median of the end points
                        for c2, box in (("pre_median", cfg.box_mm), (near, args.near_mm)):
                            d2 = det if box == cfg.box_mm else localise(net, cfg, vol, start_points(
                                np.asarray(centre), cfg.n_starts, box, sp, seed), sp, dev)
                            e2, w2 = errors(np.median(d2.ends, axis=0), d2.ends, truth, sp)
                            errs[c2].append(e2)
                            within[c2].append(w2)
                            better[c2].append(e2 < initial)
                    if c.startswith("pre"):
                        better[c].append(e < initial)
                print(f"  seed {seed} {d['patient']}/{lm}: initial {initial:.2f} mm; "
                      + " ".join(f"{c} {errs[c][-1]:.2f}" for c in conds), flush=True)
        for c in conds:
            per_seed[c].append(errs[c])
    print(f"\nidentity (initial error): mean {np.mean(initial_all):.2f} mm, median {np.median(initial_all):.2f} mm")
    print("condition       mean error (mm) [per-seed range]   median   end points within 2 mm   better than identity")
    for c in conds:
        means = [np.mean(e) for e in per_seed[c]]
        allv = np.concatenate(per_seed[c])
        b = f"{100 * np.mean(better[c]):.0f}%" if better[c] else "-"
        print(f"{c:15s} {np.mean(means):6.2f} [{min(means):.2f}-{max(means):.2f}]"
              f"              {np.median(allv):6.2f}   {100 * np.mean(within[c]):5.0f}%                   {b}")


if __name__ == "__main__":
    main()
