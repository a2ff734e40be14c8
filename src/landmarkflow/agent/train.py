"""Training of one patient-specific agent on the post-operative scan.

Many environments step at once; transitions go to a position replay
(:mod:`.replay`); the learner gathers the patches of a sampled batch from the
training volumes on the device, applies the same random intensity
augmentation to a transition's two states, and minimises the Huber loss to
double-DQN targets from a target network that is synchronised every
``target_sync`` updates. Training volumes are the post-op image and
``versions - 1`` augmented copies (see :func:`augmented_versions`).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import ndimage

from ..logutil import progress
from .env import LandmarkEnv, PatchVolume
from .network import DuelingQNet
from .replay import PositionReplay

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    """Agent and training parameters (config key ``agent``); defaults follow the paper where it says."""

    patch: int = 15  # state: patch edge in voxels
    history: int = 4  # frame history
    scales: list = field(default_factory=lambda: [3, 2, 1])  # multi-scale search, coarse to fine (voxels per step)
    box_mm: float = 50.0  # training starts and test starts lie in a box of this edge around the landmark
    terminal_mm: float = 1.0  # training episode ends (terminal) within this distance
    near_fraction: float = 0.5  # share of training episodes that start within near_mm (per axis) of the landmark
    near_mm: float = 5.0
    n_envs: int = 32  # environments stepped at once
    updates: int = 800  # gradient updates (one per environment step)
    batch: int = 64
    gamma: float = 0.5
    lr: float = 1e-3
    target_sync: int = 100  # updates between target-network copies
    eps_start: float = 1.0
    eps_end: float = 0.1
    eps_fraction: float = 0.5  # share of training over which epsilon decays
    max_episode_steps: int = 60
    replay: int = 50_000
    warmup: int = 1_000  # transitions before the first update
    versions: int = 4  # training volumes: the image and versions-1 augmented copies
    fill_cavity: bool = True  # augmented copies: tissue-like texture in the cavity
    warp_deg: float = 0.0  # augmented copies: random rotation about the landmark (degrees)
    warp_scale: float = 0.0  # augmented copies: random scaling and shear (per matrix entry)
    warp_mm: float = 0.0  # augmented copies: smooth random displacement (mm, standard deviation)
    width: int = 32  # network width
    n_starts: int = 20  # test: fixed start points
    max_test_steps: int = 150
    max_shift_mm: float = 10.0  # test: a prediction farther than this from the start box centre falls back to it
    guide_test: bool = True  # guided agent at test time: no steps into the pre-op tumour mask
    test_smooth_mm: float = 1.0  # test: Gaussian smoothing (sigma, mm) of the pre-op scan, to the post-op scan's coarser look
    modalities: list = field(default_factory=list)  # channels; empty = the reference modality only

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def setup_device(device: str, threads: int | None) -> torch.device:
    """Torch threads and device of a job; logs what the job sees (a SLURM GPU job sets CUDA_VISIBLE_DEVICES)."""
    import os

    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    log.info("device %s (requested %s, CUDA_VISIBLE_DEVICES=%s, cuda available: %s), %d torch threads", dev, device,
             os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), torch.cuda.is_available(), torch.get_num_threads())
    return dev


def seed_for(seed: int, *keys) -> int:
    """A 31-bit seed from the master seed and identifiers (patient, landmark, variant)."""
    return (int(seed) * 1_000_003 + zlib.crc32("/".join(map(str, keys)).encode())) % (2**31 - 1)


def warp_about(volume: np.ndarray, target_vox, rng: np.random.Generator, rotate_deg: float, scale: float,
               elastic_mm: float, spacing=(1.0, 1.0, 1.0), smooth_mm: float = 10.0) -> np.ndarray:
    """``volume`` (C, X, Y, Z) under a random local deformation that keeps ``target_vox`` in place.

    Backward map (mm about the target ``t``): ``x -> t + A (x - t) + e(x) - e(t)`` with ``A`` a rotation
    (up to ``rotate_deg`` about a random axis) times a scaling and shear of up to ``scale`` per entry, and
    ``e`` a smooth random field (Gaussian of ``smooth_mm``) of ``elastic_mm`` standard deviation. The
    anatomy around the landmark bends as between two scans, while the landmark stays where the agent is
    rewarded for finding it. Masks are not warped: the guided agent's cavity penalty keeps the
    unwarped cavity, a few mm off in a warped copy.
    """
    sp = np.asarray(spacing, dtype=float)
    t = np.asarray(target_vox, dtype=float) * sp
    shape = volume.shape[1:]
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    a = rot @ (np.eye(3) + rng.uniform(-scale, scale, (3, 3)))
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) * np.float32(d) for s, d in zip(shape, sp)],
                                indexing="ij"))
    src = np.einsum("ij,j...->i...", a.astype(np.float32), grid - t.astype(np.float32)[:, None, None, None])
    src += t.astype(np.float32)[:, None, None, None]
    if elastic_mm > 0:
        step = max(1, int(round(smooth_mm / 2 / sp.min())))
        coarse = [max(2, -(-s // step) + 1) for s in shape]
        at = tuple(int(np.clip(round(v), 0, s - 1)) for v, s in zip(np.asarray(target_vox, dtype=float), shape))
        for i in range(3):
            e = ndimage.gaussian_filter(rng.standard_normal(coarse), smooth_mm / (step * sp.min()), mode="wrap")
            e = ndimage.zoom(e / (e.std() + 1e-9) * elastic_mm, [s / c for s, c in zip(shape, coarse)], order=1)[
                : shape[0], : shape[1], : shape[2]].astype(np.float32)
            src[i] += e - e[at]  # zero displacement at the target
    src /= sp.astype(np.float32)[:, None, None, None]
    return np.stack([ndimage.map_coordinates(ch, src, order=1, mode="nearest") for ch in volume]).astype(np.float32)


def augmented_versions(image: np.ndarray, brain: np.ndarray, cavity: np.ndarray | None, n: int, rng: np.random.Generator,
                       fill_cavity: bool = True, target_vox=None,
                       warp_deg: float = 0.0, warp_scale: float = 0.0, warp_mm: float = 0.0,
                       spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """``n`` training volumes (n, C, X, Y, Z): the image and ``n - 1`` copies with the cavity filled with
    tissue-like texture (so that the agent cannot rely on it), another smoothing and a bias field, and,
    when ``target_vox`` and a warp are given, a random local deformation that keeps the target in place
    (:func:`warp_about`)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    out = [image]
    shape = image.shape[1:]
    brain_vals = image[:, brain] if brain is not None and brain.any() else image.reshape(image.shape[0], -1)
    for _ in range(n - 1):
        v = image.copy()
        if fill_cavity and cavity is not None and cavity.any():
            grown = ndimage.binary_dilation(cavity, iterations=1)
            noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), rng.uniform(1.0, 3.0))
            noise /= noise.std() + 1e-6
            for c in range(v.shape[0]):
                mu = np.percentile(brain_vals[c], rng.uniform(30, 70))
                sd = brain_vals[c].std() * rng.uniform(0.3, 0.8)
                v[c][grown] = (mu + sd * noise)[grown]
        sigma = rng.uniform(0.0, 1.2)
        if sigma > 0.2:
            v = np.stack([ndimage.gaussian_filter(ch, sigma) for ch in v])
        axes = [np.linspace(-1, 1, s, dtype=np.float32) for s in shape]
        x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
        c = rng.uniform(-0.1, 0.1, 3)
        v = v * (1 + c[0] * x + c[1] * y + c[2] * z)[None]
        if target_vox is not None and (warp_deg > 0 or warp_scale > 0 or warp_mm > 0):
            v = warp_about(v, target_vox, rng, warp_deg, warp_scale, warp_mm, spacing)
        out.append(v.astype(np.float32))
    return np.stack(out)


def augment_patches(x: torch.Tensor, gen: torch.Generator, n_pairs: int, noise_bank: torch.Tensor) -> torch.Tensor:
    """Random gain, gamma and noise per sample; ``x`` holds the current states then the next states,
    ``n_pairs`` each, and a transition's two states get the same gain, gamma and noise level.
    The noise comes from a bank of pre-drawn patches (drawing fresh noise costs more than the network)."""
    dev = x.device
    shape = (n_pairs,) + (1,) * (x.ndim - 1)
    gain = torch.empty(shape, device=dev).uniform_(0.85, 1.15, generator=gen).repeat(2, *shape[1:])
    gamma = torch.exp(torch.empty(shape, device=dev).uniform_(-0.3, 0.3, generator=gen)).repeat(2, *shape[1:])
    sigma = torch.empty(shape, device=dev).uniform_(0.0, 0.04, generator=gen).repeat(2, *shape[1:])
    pick = torch.randint(0, noise_bank.shape[0], (x.shape[0],), device=dev, generator=gen)
    return gain * torch.clamp(x, min=0) ** gamma + sigma * noise_bank[pick]


class Trainer:
    """One agent: ``volumes`` (K, C, X, Y, Z) on ``device``, a target voxel position, an optional guidance mask."""

    def __init__(self, volumes: np.ndarray, target_vox, cfg: AgentConfig, seed: int, device="cpu",
                 mask: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0)):
        self.cfg = cfg
        self.device = torch.device(device)
        self.seed = seed
        torch.manual_seed(seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        vols = torch.as_tensor(volumes, dtype=torch.float32, device=self.device)
        self.vol = PatchVolume(vols, cfg.patch, max(cfg.scales), spacing)
        self.k, self.c = self.vol.versions, self.vol.channels
        self.spacing = torch.as_tensor(spacing, dtype=torch.float32, device=self.device)
        self.target = torch.as_tensor(target_vox, dtype=torch.float32, device=self.device)
        mask_t = None if mask is None else torch.as_tensor(np.asarray(mask, bool), device=self.device)
        self.env = LandmarkEnv(self.vol, self.target, cfg.n_envs, cfg.history, mask_t, cfg.scales, cfg.terminal_mm)
        self.net = DuelingQNet(cfg.history * self.c, cfg.patch, cfg.width).to(self.device)
        self.target_net = DuelingQNet(cfg.history * self.c, cfg.patch, cfg.width).to(self.device)
        self.target_net.load_state_dict(self.net.state_dict())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.replay = PositionReplay(cfg.replay, cfg.history, self.device, self.gen)
        p = cfg.patch
        self.noise_bank = torch.randn(256, cfg.history * self.c, p, p, p, device=self.device, generator=self.gen)
        self.frame_pos = torch.zeros(cfg.n_envs, cfg.history, 3, dtype=torch.long, device=self.device)
        self.frame_scale = torch.zeros(cfg.n_envs, cfg.history, dtype=torch.long, device=self.device)
        self.ep_steps = torch.zeros(cfg.n_envs, dtype=torch.long, device=self.device)
        self.ep_reward = torch.zeros(cfg.n_envs, device=self.device)
        self.updates_done = 0
        self.env_steps = 0
        self.log_rows: list[dict] = []
        self._window = {"loss": [], "reward": [], "success": [], "final_mm": []}

    # -------------------------------------------------------------- helpers
    def _states(self, pos_hist, scale_hist, version):
        """(N, h*C, P, P, P) from position and scale histories (N, h, 3), (N, h)."""
        n, h = scale_hist.shape
        v = version[:, None].expand(n, h).reshape(-1)
        x = self.vol.patches(pos_hist.reshape(-1, 3), scale_hist.reshape(-1), v)
        return x.reshape(n, h * self.c, *x.shape[2:])

    def _random_starts(self, n):
        """Episode starts: uniform in the start box, a ``near_fraction`` share of them within ``near_mm`` per axis."""
        half = self.cfg.box_mm / 2 / self.spacing
        near = torch.rand(n, 1, device=self.device, generator=self.gen) < self.cfg.near_fraction
        half = torch.where(near, self.cfg.near_mm / self.spacing, half)
        off = (torch.rand(n, 3, device=self.device, generator=self.gen) * 2 - 1) * half
        return torch.round(self.target + off).long()

    def _reset(self, idx):
        if idx.numel() == 0:
            return
        starts = self._random_starts(idx.numel())
        self.env.version[idx] = torch.randint(0, self.k, (idx.numel(),), device=self.device, generator=self.gen)
        self.env.reset(starts, idx)
        pos = self.env.pos[idx]
        self.frame_pos[idx] = pos[:, None, :].expand(-1, self.cfg.history, 3)
        self.frame_scale[idx] = self.env.scale[idx][:, None].expand(-1, self.cfg.history)
        self.ep_steps[idx] = 0
        self.ep_reward[idx] = 0

    def _rebuild_frames(self):
        self.env.set_state(self._states(self.frame_pos, self.frame_scale, self.env.version))

    def epsilon(self) -> float:
        frac = min(1.0, self.updates_done / max(1, self.cfg.eps_fraction * self.cfg.updates))
        return self.cfg.eps_start + frac * (self.cfg.eps_end - self.cfg.eps_start)

    # -------------------------------------------------------------- loop
    @torch.no_grad()
    def _act(self):
        q = self.net(self.env.state())
        greedy = q.argmax(1)
        rand = torch.randint(0, 6, greedy.shape, device=self.device, generator=self.gen)
        explore = torch.rand(greedy.shape, device=self.device, generator=self.gen) < self.epsilon()
        return torch.where(explore, rand, greedy)

    def _env_step(self):
        cfg = self.cfg
        action = self._act()
        reward, done, osc = self.env.step(action)
        new_pos, new_scale = self.env.pos.clone(), self.env.scale.clone()
        pos_hist = torch.cat([self.frame_pos, new_pos[:, None]], 1)
        scale_hist = torch.cat([self.frame_scale, new_scale[:, None]], 1)
        self.replay.add(pos_hist, scale_hist, action, reward, done, self.env.version)
        self.frame_pos = pos_hist[:, 1:]
        self.frame_scale = scale_hist[:, 1:]
        self.ep_steps += 1
        self.ep_reward += reward
        self.env_steps += cfg.n_envs
        finished_osc = self.env.refine(osc & ~done)
        refined = osc & ~done & ~finished_osc
        if refined.any():  # the finer scale starts a fresh frame history
            idx = refined.nonzero().squeeze(1)
            self.frame_pos[idx] = self.env.pos[idx][:, None].expand(-1, cfg.history, 3)
            self.frame_scale[idx] = self.env.scale[idx][:, None].expand(-1, cfg.history)
        end = done | finished_osc | (self.ep_steps >= cfg.max_episode_steps)
        if end.any():
            idx = end.nonzero().squeeze(1)
            self._window["reward"] += self.ep_reward[idx].tolist()
            self._window["success"] += done[idx].float().tolist()
            final = torch.linalg.norm((self.env.pos[idx].float() - self.target) * self.spacing, dim=-1)
            self._window["final_mm"] += final.tolist()
            self._reset(idx)
            self._rebuild_frames()

    def _update(self):
        cfg = self.cfg
        pos, scale, action, reward, done, version = self.replay.sample(cfg.batch)
        h = cfg.history
        both = self._states(torch.cat([pos[:, :h], pos[:, 1:]]), torch.cat([scale[:, :h], scale[:, 1:]]), torch.cat([version, version]))
        both = augment_patches(both, self.gen, cfg.batch, self.noise_bank)
        s, s2 = both[: cfg.batch], both[cfg.batch :]
        q = self.net(s).gather(1, action[:, None]).squeeze(1)
        with torch.no_grad():
            a2 = self.net(s2).argmax(1, keepdim=True)  # double DQN: online net picks, target net evaluates
            q2 = self.target_net(s2).gather(1, a2).squeeze(1)
            y = reward + cfg.gamma * (~done).float() * q2
        loss = torch.nn.functional.smooth_l1_loss(q, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        self.opt.step()
        self.updates_done += 1
        if self.updates_done % cfg.target_sync == 0:
            self.target_net.load_state_dict(self.net.state_dict())
        self._window["loss"].append(float(loss.detach()))

    def _log(self, t0):
        w = self._window
        row = {
            "update": self.updates_done,
            "env_steps": self.env_steps,
            "seconds": round(time.time() - t0, 2),
            "epsilon": round(self.epsilon(), 3),
            "loss": float(np.mean(w["loss"])) if w["loss"] else float("nan"),
            "episode_reward": float(np.mean(w["reward"])) if w["reward"] else float("nan"),
            "success_rate": float(np.mean(w["success"])) if w["success"] else float("nan"),
            "final_distance_mm": float(np.mean(w["final_mm"])) if w["final_mm"] else float("nan"),
            "episodes": len(w["reward"]),
        }
        self.log_rows.append(row)
        self._window = {k: [] for k in w}
        log.info("update %s: loss %.4f reward %.2f success %.2f final %.1f mm",
                 progress(self.updates_done, self.cfg.updates, time.time() - t0), row["loss"], row["episode_reward"],
                 row["success_rate"], row["final_distance_mm"])

    def train(self, log_every: int = 50, checkpoint=None, checkpoint_every: int = 200):
        """Run until ``cfg.updates`` updates; resumable from ``checkpoint`` (a path) if it exists."""
        cfg = self.cfg
        t0 = time.time()
        if self.env.frames is None:
            self._reset(torch.arange(cfg.n_envs, device=self.device))
            self._rebuild_frames()
        while self.replay.size < min(cfg.warmup, cfg.replay):
            self._env_step()
        while self.updates_done < cfg.updates:
            self._env_step()
            self._update()
            if self.updates_done % log_every == 0:
                self._log(t0)
            if checkpoint is not None and self.updates_done % checkpoint_every == 0:
                self.save_checkpoint(checkpoint)
        return self.log_rows

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "opt": self.opt.state_dict(),
            "updates_done": self.updates_done,
            "env_steps": self.env_steps,
            "log_rows": self.log_rows,
            "torch_rng": torch.get_rng_state(),
            "gen": self.gen.get_state(),
        }

    def save_checkpoint(self, path) -> None:
        from ..io import atomic_path

        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(self.state_dict(), tmp)

    def load_checkpoint(self, path) -> None:
        """Resume: network, optimiser and counters (the replay restarts from the current policy)."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.net.load_state_dict(state["net"])
        self.target_net.load_state_dict(state["target_net"])
        self.opt.load_state_dict(state["opt"])
        self.updates_done = state["updates_done"]
        self.env_steps = state["env_steps"]
        self.log_rows = state["log_rows"]
        torch.set_rng_state(state["torch_rng"])
        self.gen.set_state(state["gen"])
