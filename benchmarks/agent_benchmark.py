"""Agent and PIN benchmark: prints the figures the agent issues ask for, and PIN's (not a test).

    .venv/bin/python benchmarks/agent_benchmark.py [--preproc results/demo01/preproc] [--device cpu|cuda] [--threads 2]
        [--agents 1,8,24,64] [--updates 100]

Figures: environment steps per second (batched random actions: patch gather,
reward, mask penalty); for B = 1, 8, 24 and 64 agents trained in one batched
loop (the workflow's ``train_agents``), the seconds per update, the amortised
seconds per agent for the configured 800 updates and the peak memory (each B
in a process of its own, so that the peaks are its own); seconds per landmark
for redetection from 20 starts; PIN's training and localisation. The timed
updates (``--updates``, after the warm-up) are extrapolated to the configured
budget: the loop's cost per update is flat. Without --preproc it uses a
synthetic 160x190x160 volume.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from landmarkflow.detect.agent.detect import redetect
from landmarkflow.detect.search import start_points
from landmarkflow.detect.agent.env import LandmarkEnv
from landmarkflow.detect.patches import PatchVolume
from landmarkflow.detect.agent.train import AgentConfig, AgentSpec, Trainer
from landmarkflow.detect.augment import augmented_versions
from landmarkflow.detect.pin import PinConfig, PinTrainer, localise


def load(preproc):
    """The reference modality of a preprocessed patient, its cavity and its first post-op landmark (voxels)."""
    from landmarkflow.cohort.preproc_folder import PreprocFolder

    folder = PreprocFolder.in_workdir(preproc)  # with the derived masks, where the workflow made them
    post = folder.image("post", folder.reference_modality)
    pre = folder.image("pre", folder.reference_modality)
    mask = folder.lesion("post")
    if mask is None:
        mask = np.zeros(post.shape, bool)
    _, target = folder.target(folder.landmarks("post")["landmark"].iloc[0], post.affine)
    return post.data, pre.data, mask, target


def synthetic():
    rng = np.random.default_rng(0)
    from scipy import ndimage

    post = ndimage.gaussian_filter(rng.random((160, 190, 160), dtype=np.float32), 2)
    pre = post + rng.normal(0, 0.01, post.shape).astype(np.float32)
    mask = np.zeros(post.shape, bool)
    mask[70:90, 80:100, 70:90] = True
    return post, pre, mask, np.array([95.0, 95.0, 80.0])


def channels(v, n):
    """The image and intensity-transformed copies as further channels (the demo config uses 2)."""
    return np.stack([v] + [np.clip(v, 0, None) ** (1 + 0.3 * c) for c in range(1, n)])


def versions_for(post, mask, n_channels, cfg):
    return augmented_versions(channels(post, n_channels), post > 0, mask, cfg.versions, np.random.default_rng(0))


def one_batch(args, dev):
    """Train ``args.one_batch`` agents at once (targets spread around the landmark, half of them guided); print
    one JSON line: seconds per update, amortised seconds per agent for the configured updates, peak memory."""
    post, _, mask, target = load(args.preproc) if args.preproc else synthetic()
    cfg = AgentConfig()
    rng = np.random.default_rng(1)
    specs = [AgentSpec(tuple(target + rng.integers(-10, 11, 3)), seed=i, guided=i % 2 == 1) for i in range(args.one_batch)]
    volumes = versions_for(post, mask, args.channels, cfg)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tr = Trainer(volumes, specs, AgentConfig(updates=0), device=dev, mask=mask)
    tr.train(log_every=10**9)  # set-up and warm-up (the replay's first transitions)
    sync(dev)
    setup = time.perf_counter() - t0
    tr.cfg = AgentConfig(updates=args.updates)
    t0 = time.perf_counter()
    tr.train(log_every=10**9)
    sync(dev)
    per_update = (time.perf_counter() - t0) / args.updates
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    print(json.dumps({"agents": args.one_batch, "per_update_s": per_update, "setup_s": setup,
                      "per_agent_s": (setup + per_update * cfg.updates) / args.one_batch, "peak_mb": peak,
                      "gpu": dev.type == "cuda"}))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preproc", type=Path)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--envs", type=int, default=1024, help="environments for the environment-only benchmark")
    ap.add_argument("--updates", type=int, default=100, help="updates timed per number of agents")
    ap.add_argument("--channels", type=int, default=2,
                    help="image channels of the training (the demo config uses 2: t1ce and flair); "
                         "extra channels are intensity-transformed copies of the image, which costs the same")
    ap.add_argument("--agents", default="1,8,24,64", help="numbers of agents trained in one batched loop")
    ap.add_argument("--one-batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.one_batch:
        return one_batch(args, dev)
    post, pre, mask, target = load(args.preproc) if args.preproc else synthetic()
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

    # 2. batched trainings, each number of agents in a process of its own
    cfg = AgentConfig()
    print(f"training: {cfg.updates} updates per agent (n_envs {cfg.n_envs}, batch {cfg.batch}, {args.channels} channel"
          f"{'s' if args.channels > 1 else ''}); {args.updates} updates timed after the warm-up")
    print(f"{'agents':>6} {'s/update':>9} {'s/agent (800 upd.)':>19} {'vs B=1':>7} {'peak memory':>12}")
    base = None
    for b in [int(v) for v in args.agents.split(",")]:
        cmd = [sys.executable, __file__, "--one-batch", str(b), "--device", str(dev), "--threads", str(args.threads),
               "--updates", str(args.updates), "--channels", str(args.channels)] + (["--preproc", str(args.preproc)] if args.preproc else [])
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{b:>6} failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        base = base or r["per_agent_s"]
        print(f"{b:>6} {r['per_update_s']:>9.3f} {r['per_agent_s']:>19.1f} {base / r['per_agent_s']:>6.1f}x {r['peak_mb']:>9.0f} MB"
              + (" (GPU)" if r["gpu"] else " (RSS)"))

    tr = Trainer(versions_for(post, mask, args.channels, cfg), AgentSpec(tuple(target), 0, True), AgentConfig(updates=200),
                 device=dev, mask=mask)
    tr.train(log_every=10**9)
    test = channels(pre, args.channels)
    # 3. redetection from 20 starts
    starts = start_points(target, cfg.n_starts, cfg.box_mm, (1, 1, 1), seed=0)
    redetect(tr.network(0), test, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps, device=dev)  # warm-up
    t0 = time.perf_counter()
    det = redetect(tr.network(0), test, starts, cfg.patch, cfg.history, cfg.scales, cfg.max_test_steps, device=dev)
    dt = time.perf_counter() - t0
    print(f"redetection: {dt:.2f} s per landmark ({cfg.n_starts} starts, {int(det.steps.max())} steps at most)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f"; GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if dev.type == "cuda" else ""
    print(f"peak memory (process RSS): {peak:.0f} MB{gpu}")

    # 4. PIN, the supervised rival: one training and one localisation with the default config
    pcfg = PinConfig()
    t0 = time.perf_counter()
    pt = PinTrainer(versions_for(post, mask, 1, cfg), target, pcfg, seed=0, device=dev)  # PIN: one channel, as in the demo config
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
