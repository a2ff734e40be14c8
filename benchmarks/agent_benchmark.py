"""Agent and PIN benchmark: prints the figures the agent issue asks for, and PIN's (not a test).

    .venv/bin/python benchmarks/agent_benchmark.py [--preproc results/demo01/preproc] [--device cpu|cuda] [--threads 2]

Figures: environment steps per second (batched random actions: patch gather,
reward, mask penalty), training-loop steps per second, seconds to train one
agent with the configured budget, seconds per landmark for redetection from
20 starts, peak memory of one training, replay size. Without --preproc it uses
a synthetic 160x190x160 volume.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from landmarkflow.agent.detect import redetect, start_points  # noqa: E402
from landmarkflow.agent.env import LandmarkEnv, PatchVolume  # noqa: E402
from landmarkflow.agent.train import AgentConfig, Trainer, augmented_versions  # noqa: E402
from landmarkflow.pin import PinConfig, PinTrainer, localise  # noqa: E402


def load(preproc):
    """The reference modality of a preprocessed patient, its cavity and its first post-op landmark (voxels)."""
    from landmarkflow.preproc_folder import PreprocFolder

    folder = PreprocFolder(preproc)
    post = folder.image("post", folder.reference_modality)
    pre = folder.image("pre", folder.reference_modality)
    mask = folder.lesion("post")
    if mask is None:
        mask = np.zeros(post.shape, bool)
    _, target = folder.target(folder.landmarks("post")["landmark"].iloc[0], post.affine)
    return post.data, pre.data, mask, target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preproc", type=Path)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--envs", type=int, default=1024, help="environments for the environment-only benchmark")
    ap.add_argument("--updates", type=int, default=AgentConfig().updates)
    ap.add_argument("--channels", type=int, default=1,
                    help="image channels of the training (the demo config uses 2: t1ce and flair); "
                         "extra channels are intensity-transformed copies of the image, which costs the same")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.preproc:
        post, pre, mask, target = load(args.preproc)
    else:
        rng = np.random.default_rng(0)
        from scipy import ndimage

        post = ndimage.gaussian_filter(rng.random((160, 190, 160), dtype=np.float32), 2)
        pre = post + rng.normal(0, 0.01, post.shape).astype(np.float32)
        mask = np.zeros(post.shape, bool)
        mask[70:90, 80:100, 70:90] = True
        target = np.array([95.0, 95.0, 80.0])
    print(f"device {dev}, {torch.get_num_threads()} threads, volume {post.shape}, torch {torch.__version__}")

    # 1. environment alone: batched random actions
    cfg = AgentConfig()
    vol = PatchVolume(torch.as_tensor(post[None], device=dev), cfg.patch, max(cfg.scales))
    env = LandmarkEnv(vol, torch.as_tensor(target), args.envs, cfg.history, torch.as_tensor(mask), cfg.scales)
    starts = torch.as_tensor(target, device=dev).round().long() + torch.randint(-25, 26, (args.envs, 3), device=dev)
    env.reset(starts)
    gen = torch.Generator(device=dev).manual_seed(0)
    n_steps = 200
    for _ in range(5):
        env.step(torch.randint(0, 6, (args.envs,), device=dev, generator=gen))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        env.step(torch.randint(0, 6, (args.envs,), device=dev, generator=gen))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"environment: {args.envs * n_steps / dt:,.0f} steps/s ({args.envs} envs x {n_steps} steps, patch {cfg.patch}^3, history {cfg.history})")

    # 2. one training with the configured budget
    cfg = AgentConfig(updates=args.updates)
    def channels(v):  # the image and intensity-transformed copies as further channels
        return np.stack([v] + [np.clip(v, 0, None) ** (1 + 0.3 * c) for c in range(1, args.channels)])

    image, test = channels(post), channels(pre)
    versions = augmented_versions(image, post > 0, mask, cfg.versions, np.random.default_rng(0))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tr = Trainer(versions, target, cfg, seed=0, device=dev, mask=mask)
    tr.train(log_every=10**9)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"training: {cfg.updates} updates, {tr.env_steps:,} environment steps in {dt:.1f} s "
          f"= {tr.env_steps / dt:,.0f} env steps/s, {cfg.updates / dt:.1f} updates/s (batch {cfg.batch}, {cfg.n_envs} envs, "
          f"{args.channels} channel{'s' if args.channels > 1 else ''})")
    print(f"replay: {tr.replay.nbytes() / 2**20:.1f} MB for {cfg.replay:,} transitions")

    # 3. redetection from 20 starts
    starts = start_points(target, cfg.n_starts, cfg.box_mm, (1, 1, 1), seed=0)
    redetect(tr.net, test, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps, device=dev)  # warm-up
    t0 = time.perf_counter()
    det = redetect(tr.net, test, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps, device=dev)
    dt = time.perf_counter() - t0
    print(f"redetection: {dt:.2f} s per landmark ({cfg.n_starts} starts, {int(det.steps.max())} steps at most)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (process RSS): {peak:.0f} MB" + (f"; GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if dev.type == "cuda" else ""))

    # 4. PIN, the supervised rival: one training and one localisation with the default config
    pcfg = PinConfig()
    t0 = time.perf_counter()
    pt = PinTrainer(versions[:, :1], target, pcfg, seed=0, device=dev)  # PIN: one channel, as in the demo config
    pt.train(log_every=10**9)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"PIN training: {pcfg.updates} updates in {dt:.1f} s = {pcfg.updates / dt:.1f} updates/s "
          f"(batch {pcfg.batch}, {pcfg.input} input, patch {pcfg.patch}, strides {pcfg.scales})")
    starts = start_points(target, pcfg.n_starts, pcfg.box_mm, (1, 1, 1), seed=0)
    localise(pt.net, pcfg, pre[None], starts, device=dev)  # warm-up
    t0 = time.perf_counter()
    localise(pt.net, pcfg, pre[None], starts, device=dev)
    print(f"PIN localisation: {time.perf_counter() - t0:.3f} s per landmark ({pcfg.n_starts} starts, {pcfg.iterations} iterations)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory after PIN (process RSS): {peak:.0f} MB")


if __name__ == "__main__":
    main()
