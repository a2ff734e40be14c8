"""Training of patient-specific agents on the post-operative scan, all agents of a patient at once.

Many environments per agent step at once; transitions go to a position replay
(:mod:`.replay`); the learner gathers the patches of a sampled batch from the
training volumes on the device, applies the same random intensity
augmentation to a transition's two states, and minimises the Huber loss to
double-DQN targets from a target network that is synchronised every
``target_sync`` updates. Training volumes are the post-op image and
``versions - 1`` augmented copies (see :func:`..augment.augmented_versions`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ...core.config import schema_field
from ...core.files import atomic_path
from ...core.logutil import progress
from ..patches import PatchVolume
from .detect import greedy_search
from .env import LandmarkEnv
from .network import DuelingQNet, StackedQNet
from .replay import PositionReplay
from .streams import AgentStreams

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    """Agent and training parameters (config key ``agent``); defaults from the config schema, which follow the
    paper where it says."""

    patch: int = schema_field("agent", "patch")  # state: patch edge in voxels
    history: int = schema_field("agent", "history")  # frame history
    scales: list = schema_field("agent", "scales")  # multi-scale search, coarse to fine (voxels per step)
    box_mm: float = schema_field("agent", "box_mm")  # training starts and test starts lie in a box of this edge around the landmark
    terminal_mm: float = schema_field("agent", "terminal_mm")  # training episode ends (terminal) within this distance
    near_fraction: float = schema_field("agent", "near_fraction")  # share of training episodes that start within near_mm (per axis) of the landmark
    near_mm: float = schema_field("agent", "near_mm")
    n_envs: int = schema_field("agent", "n_envs")  # environments stepped at once
    updates: int = schema_field("agent", "updates")  # gradient updates (one per environment step), at most
    early_stop: bool = schema_field("agent", "early_stop")  # an agent stops learning once it has converged
    min_updates: int = schema_field("agent", "min_updates")
    check_every: int = schema_field("agent", "check_every")
    check_starts: int = schema_field("agent", "check_starts")
    converge_mm: float = schema_field("agent", "converge_mm")
    converge_share: float = schema_field("agent", "converge_share")
    batch: int = schema_field("agent", "batch")
    gamma: float = schema_field("agent", "gamma")
    lr: float = schema_field("agent", "lr")
    target_sync: int = schema_field("agent", "target_sync")  # updates between target-network copies
    eps_start: float = schema_field("agent", "eps_start")
    eps_end: float = schema_field("agent", "eps_end")
    eps_fraction: float = schema_field("agent", "eps_fraction")  # share of training over which epsilon decays
    max_episode_steps: int = schema_field("agent", "max_episode_steps")
    replay: int = schema_field("agent", "replay")
    warmup: int = schema_field("agent", "warmup")  # transitions before the first update
    versions: int = schema_field("agent", "versions")  # training volumes: the image and versions-1 augmented copies
    fill_cavity: bool = schema_field("agent", "fill_cavity")  # augmented copies: tissue-like texture in the cavity
    warp_deg: float = schema_field("agent", "warp_deg")  # augmented copies: random rotation about the landmark (degrees)
    warp_scale: float = schema_field("agent", "warp_scale")  # augmented copies: random scaling and shear (per matrix entry)
    warp_mm: float = schema_field("agent", "warp_mm")  # augmented copies: smooth random displacement (mm, standard deviation)
    width: int = schema_field("agent", "width")  # network width
    ensemble: int = schema_field("agent", "ensemble")  # members per landmark and variant, each with its own seed; their end points are pooled
    fine_factor: int = schema_field("agent", "fine_factor")  # fine stage: local grid this many times finer; 0 = none
    fine_scales: list = schema_field("agent", "fine_scales")
    fine_box_mm: float = schema_field("agent", "fine_box_mm")
    fine_updates: int = schema_field("agent", "fine_updates")
    fine_converge_mm: float = schema_field("agent", "fine_converge_mm")
    fine_starts: int = schema_field("agent", "fine_starts")
    fine_max_shift_mm: float = schema_field("agent", "fine_max_shift_mm")
    centre: str = schema_field("agent", "centre")  # end points -> prediction: median or trimmed mean
    match_intensities: bool = schema_field("agent", "match_intensities")  # test: pre-op intensities onto the post-op's
    match_resolution: bool = schema_field("agent", "match_resolution")  # both scans at the coarser native resolution
    contrast_aug: float = schema_field("agent", "contrast_aug")  # augmented copies: random monotone curves
    blur_aug_mm: float = schema_field("agent", "blur_aug_mm")  # augmented copies: extra blur along a random axis
    input_norm: str = schema_field("agent", "input_norm")  # network input: intensities or locally standardised
    n_starts: int = schema_field("agent", "n_starts")  # test: fixed start points
    max_test_steps: int = schema_field("agent", "max_test_steps")
    max_shift_mm: float = schema_field("agent", "max_shift_mm")  # test: a prediction farther than this from the start box centre falls back to it
    guide_test: bool = schema_field("agent", "guide_test")  # guided agent at test time: no steps into the pre-op tumour mask
    # test: Gaussian smoothing (sigma, mm) of the pre-op scan, to the post-op scan's coarser look
    test_smooth_mm: float = schema_field("agent", "test_smooth_mm")
    seeded_box_mm: float = schema_field("agent", "seeded_box_mm")  # agent_seeded: start box edge around the registration's landmark
    # agent_seeded: farther than this from the registration's landmark falls back to it
    seeded_max_shift_mm: float = schema_field("agent", "seeded_max_shift_mm")
    modalities: list = schema_field("agent", "modalities")  # channels; empty = the reference modality only

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AgentSpec:
    """One agent of a (batched) training: its target (voxel position), its seed, whether the guidance
    mask applies to it, and the training volumes it sees (indices into the trainer's volumes; None = all)."""

    target: tuple
    seed: int
    guided: bool = False
    versions: tuple | None = None


class Trainer:
    """``B`` agents trained at once, in one vectorised loop.

    ``volumes`` (V, C, X, Y, Z) are on ``device`` once for all agents; each agent
    (:class:`AgentSpec`) has its target, its seed, its guidance flag (``mask``,
    the cavity, then applies) and its ``cfg.versions`` training volumes. Every
    step moves all ``B x n_envs`` environments, every update trains all agents
    on their own samples (:class:`.network.StackedQNet`); nothing loops over
    agents in Python but the network's layers on a CPU, and nothing waits for
    the device between two log lines. An agent's random numbers depend on its seed
    alone (:class:`.streams.AgentStreams`), and on the CPU its network is the
    one it gets when trained alone with the same seed.
    """

    def __init__(self, volumes: np.ndarray, agents, cfg: AgentConfig, device="cpu", mask: np.ndarray | None = None,
                 spacing=(1.0, 1.0, 1.0), noise_seed: int = 0, grouped: bool | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        agents = [agents] if isinstance(agents, AgentSpec) else list(agents)
        self.agents = [AgentSpec(tuple(float(v) for v in a.target), int(a.seed), bool(a.guided),
                                 None if a.versions is None else tuple(int(v) for v in a.versions)) for a in agents]
        b = self.b = len(self.agents)
        if b == 0:
            raise ValueError("no agents to train")
        vols = torch.as_tensor(np.asarray(volumes), dtype=torch.float32, device=self.device)
        self.vol = PatchVolume(vols, cfg.patch, max(cfg.scales), spacing)
        self.c = self.vol.channels
        table = [a.versions if a.versions is not None else tuple(range(self.vol.versions)) for a in self.agents]
        if len({len(t) for t in table}) != 1 or min(min(t) for t in table) < 0 or max(max(t) for t in table) >= self.vol.versions:
            raise ValueError(f"agents' training volumes {table}: every agent needs as many, among 0-{self.vol.versions - 1}")
        self.version_table = torch.as_tensor(table, dtype=torch.long, device=self.device)  # (B, k)
        self.k = self.version_table.shape[1]
        self.spacing = torch.as_tensor(spacing, dtype=torch.float32, device=self.device)
        self.targets = torch.as_tensor(np.array([a.target for a in self.agents], dtype=float), dtype=torch.float32,
                                       device=self.device)
        guided = torch.tensor([a.guided for a in self.agents], device=self.device)
        if bool(guided.any()) and mask is None:
            raise ValueError("a guided agent needs the guidance mask")
        n = cfg.n_envs
        self.n_total = b * n
        mask_t = None if not bool(guided.any()) else torch.as_tensor(np.asarray(mask, bool), device=self.device)
        self.env = LandmarkEnv(self.vol, self.targets.repeat_interleave(n, 0), self.n_total, cfg.history, mask_t,
                               cfg.scales, cfg.terminal_mm, mask_on=guided.repeat_interleave(n), keep_frames=False)
        nets = []
        for a in self.agents:  # each agent's initial weights: those it gets alone with its seed
            torch.manual_seed(a.seed)
            nets.append(DuelingQNet(cfg.history * self.c, cfg.patch, cfg.width))
        grouped = self.device.type == "cuda" if grouped is None else grouped
        self.net = StackedQNet(nets, grouped).to(self.device)
        self.target_net = StackedQNet(nets, grouped).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.rand = AgentStreams([a.seed for a in self.agents], self.device)
        self.replay = PositionReplay(cfg.replay, cfg.history, self.device, b)
        gen = torch.Generator().manual_seed(int(noise_seed))  # drawn on the CPU: the same noise on every device
        p = cfg.patch
        # per transition: its frames' noise, laid out as the gathered frames (P, P, P, frames, C)
        self.noise_bank = torch.randn(256, p, p, p, cfg.history + 1, self.c, generator=gen).to(self.device)
        h = cfg.history
        self.frame_pos = torch.zeros(self.n_total, h, 3, dtype=torch.long, device=self.device)
        self.frame_scale = torch.zeros(self.n_total, h, dtype=torch.long, device=self.device)
        self.local_version = torch.zeros(self.n_total, dtype=torch.long, device=self.device)
        self.ep_steps = torch.zeros(self.n_total, dtype=torch.long, device=self.device)
        self.ep_reward = torch.zeros(self.n_total, device=self.device)
        self.started = False
        self.updates_done = 0
        self.env_steps = 0  # per agent
        self.log_rows: list[list[dict]] = [[] for _ in range(b)]
        # early stopping: agents whose greedy search from fixed starts converged stop learning (frozen)
        self.active = [True] * b
        self.streak = [0] * b  # consecutive checks passed
        self.converged_at: list[int | None] = [None] * b
        self._frozen: dict = {}
        self._clear_window()

    # -------------------------------------------------------------- helpers
    def _clear_window(self):
        """Per-agent sums since the last log line, on the device: loss, episodes, their reward, successes, end distance."""
        self._window = torch.zeros(5, self.b, device=self.device)
        self._window_updates = 0

    def network(self, b: int = 0) -> DuelingQNet:
        """Agent ``b`` as a :class:`DuelingQNet` (what redetection and the model files use)."""
        net = DuelingQNet(self.cfg.history * self.c, self.cfg.patch, self.cfg.width)
        net.load_state_dict(self.net.agent_state_dict(b))
        return net.to(self.device)

    def _states(self, x: torch.Tensor, agents: int | None = None) -> torch.Tensor:
        """Network input (A, N, f * C, P, P, P) of ``agents`` (A, default all B) from
        :meth:`..patches.PatchVolume.histories` (A * N, P, P, P, f, C) (a view: channels last, frame-major
        channels as :class:`.env.LandmarkEnv` stacks them)."""
        x = x.reshape(*x.shape[:4], -1).permute(0, 4, 1, 2, 3)
        return x.reshape(self.b if agents is None else agents, -1, *x.shape[1:])

    def _random_starts(self) -> torch.Tensor:
        """A start for every environment (B * n_envs, 3): uniform in the start box around its agent's target,
        a ``near_fraction`` share of them within ``near_mm`` per axis."""
        n = self.cfg.n_envs
        near = self.rand.uniform(n)[..., None] < self.cfg.near_fraction
        half = torch.where(near, self.cfg.near_mm / self.spacing, self.cfg.box_mm / 2 / self.spacing)
        off = (self.rand.uniform(n, 3) * 2 - 1) * half
        return torch.round(self.targets[:, None] + off).long().reshape(-1, 3)

    def _reset_where(self, which: torch.Tensor):
        """New episodes for the environments where ``which`` (B * n_envs,): the draws are made for all of them."""
        h = self.cfg.history
        starts = self._random_starts()
        local = self.rand.randint(self.k, self.cfg.n_envs)
        self.local_version = torch.where(which, local.reshape(-1), self.local_version)
        self.env.reset_where(which, starts, self.version_table.gather(1, local).reshape(-1))
        self.frame_pos = torch.where(which[:, None, None], self.env.pos[:, None].expand(-1, h, 3), self.frame_pos)
        self.frame_scale = torch.where(which[:, None], self.env.scale[:, None].expand(-1, h), self.frame_scale)
        self.ep_steps = torch.where(which, torch.zeros_like(self.ep_steps), self.ep_steps)
        self.ep_reward = torch.where(which, torch.zeros_like(self.ep_reward), self.ep_reward)

    def epsilon(self) -> float:
        frac = min(1.0, self.updates_done / max(1, self.cfg.eps_fraction * self.cfg.updates))
        return self.cfg.eps_start + frac * (self.cfg.eps_end - self.cfg.eps_start)

    # -------------------------------------------------------------- loop
    @torch.no_grad()
    def _act(self):
        n = self.cfg.n_envs
        act = self._active_index()
        rand = self.rand.randint(6, n)
        explore = self.rand.uniform(n) < self.epsilon()
        if len(act) == self.b:
            q = self.net(self._states(self.vol.histories(self.frame_pos, self.frame_scale, self.env.version)))
            greedy = q.argmax(-1)
        else:  # frozen agents take random steps: only the learning agents' networks run
            rows = self._env_rows(act)
            q = self.net(self._states(self.vol.histories(self.frame_pos[rows], self.frame_scale[rows], self.env.version[rows]),
                                      len(act)), act)
            greedy = rand.clone()
            greedy[act] = q.argmax(-1)
        return torch.where(explore, rand, greedy).reshape(-1)

    def _active_index(self) -> list[int]:
        return [i for i, a in enumerate(self.active) if a]

    def _env_rows(self, agents: list[int]) -> torch.Tensor:
        """The environment rows (agent-major) of ``agents``."""
        n = self.cfg.n_envs
        return (torch.as_tensor(agents, device=self.device)[:, None] * n + torch.arange(n, device=self.device)).reshape(-1)

    @torch.no_grad()
    def _env_step(self):
        cfg, b, n, h = self.cfg, self.b, self.cfg.n_envs, self.cfg.history
        action = self._act()
        reward, done, osc = self.env.step(action)
        pos_hist = torch.cat([self.frame_pos, self.env.pos[:, None]], 1)
        scale_hist = torch.cat([self.frame_scale, self.env.scale[:, None]], 1)
        self.replay.add(pos_hist.reshape(b, n, h + 1, 3), scale_hist.reshape(b, n, h + 1), action.reshape(b, n),
                        reward.reshape(b, n), done.reshape(b, n), self.local_version.reshape(b, n))
        self.frame_pos, self.frame_scale = pos_hist[:, 1:], scale_hist[:, 1:]
        self.ep_steps = self.ep_steps + 1
        self.ep_reward = self.ep_reward + reward
        self.env_steps += n
        finished_osc = self.env.refine(osc & ~done)
        refined = (osc & ~done & ~finished_osc)[:, None]  # the finer scale starts a fresh frame history
        self.frame_pos = torch.where(refined[..., None], self.env.pos[:, None].expand(-1, h, 3), self.frame_pos)
        self.frame_scale = torch.where(refined, self.env.scale[:, None].expand(-1, h), self.frame_scale)
        end = done | finished_osc | (self.ep_steps >= cfg.max_episode_steps)
        final = self.env.distance_mm(self.env.pos)
        e = end.float()
        self._window[1:] += torch.stack([e, e * self.ep_reward, e * done.float(), e * final]).reshape(4, b, n).sum(-1)
        self._reset_where(end)

    def _update(self):
        cfg, h, m = self.cfg, self.cfg.history, self.cfg.batch
        pos, scale, action, reward, done, local = self.replay.sample(self.rand.randint(self.replay.size, m))
        version = self.version_table.gather(1, local)
        act = self._active_index()
        b = len(act)
        shape = (b * m, 1, 1, 1, 1, 1)
        gain = (0.85 + 0.3 * self.rand.uniform(m)).reshape(self.b, -1)[act].reshape(shape)
        gamma = torch.exp(0.6 * self.rand.uniform(m) - 0.3).reshape(self.b, -1)[act].reshape(shape)
        sigma = (0.04 * self.rand.uniform(m)).reshape(self.b, -1)[act].reshape(shape)
        pick = self.rand.randint(self.noise_bank.shape[0], m)[act].reshape(-1)
        if b < self.b:  # only the learning agents' transitions
            pos, scale, action, reward, done, version = (t[act] for t in (pos, scale, action, reward, done, version))
        # the h + 1 frames of a transition once: s is the first h, s' the last h
        x = self.vol.histories(pos.reshape(b * m, h + 1, 3), scale.reshape(b * m, h + 1), version.reshape(-1))
        # random gain, gamma, noise level and noise per transition (drawn above, for every agent), the noise from a
        # bank of pre-drawn patches
        noise = self.noise_bank.index_select(0, pick)
        x = x.clamp_(min=0).pow_(gamma).mul_(gain).addcmul_(noise, sigma)  # in place: x is a fresh gather
        s, s2 = self._states(x[..., :h, :], b), self._states(x[..., 1:, :], b)
        agents = None if b == self.b else act
        q = self.net(s, agents).gather(-1, action[..., None]).squeeze(-1)
        with torch.no_grad():
            a2 = self.net(s2, agents).argmax(-1, keepdim=True)  # double DQN: online net picks, target net evaluates
            q2 = self.target_net(s2, agents).gather(-1, a2).squeeze(-1)
            y = reward + cfg.gamma * (~done).float() * q2
        loss = torch.nn.functional.smooth_l1_loss(q, y, reduction="none").mean(1)  # (B,)
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        params = [p for p in self.net.parameters() if p.grad is not None]
        norm = torch.stack([p.grad.pow(2).reshape(self.b, -1).sum(1) for p in params]).sum(0).sqrt()
        coef = torch.clamp(10.0 / (norm + 1e-6), max=1.0)  # each agent's gradient clipped to norm 10
        for p in params:
            p.grad.mul_(coef.reshape(self.b, *([1] * (p.grad.ndim - 1))))
        self.opt.step()
        self._restore_frozen()
        self.updates_done += 1
        if self.updates_done % cfg.target_sync == 0:
            self.target_net.load_state_dict(self.net.state_dict())
        full = loss.new_zeros(self.b)
        full[act] = loss.detach()
        self._window[0] += full
        self._window_updates += 1

    # -------------------------------------------------------------- early stopping
    def _eval_starts(self, agents: list[int]) -> torch.Tensor:
        """Fixed start points of the convergence checks, ``cfg.check_starts`` per agent (agent-major), uniform in
        the agent's start box, drawn from its seed alone."""
        out = []
        half = self.cfg.box_mm / 2 / self.spacing.cpu().numpy()
        for i in agents:
            rng = np.random.default_rng([self.agents[i].seed, 7919])
            off = rng.uniform(-1, 1, (self.cfg.check_starts, 3)) * half
            out.append(np.rint(np.asarray(self.agents[i].target) + off))
        return self.vol.clamp(torch.as_tensor(np.concatenate(out), dtype=torch.long, device=self.device))

    @torch.no_grad()
    def check_convergence(self) -> list[float]:
        """Greedy searches of the learning agents from their fixed starts on their first training volume; an agent
        whose searches end within ``cfg.converge_mm`` of its target from at least ``cfg.converge_share`` of the starts
        at two checks in a row has converged: it stops learning (frozen). Returns the learning agents' shares."""
        cfg = self.cfg
        act = self._active_index()
        if not act:
            return []
        n = cfg.check_starts
        agents = None if len(act) == self.b else act

        def q_fn(states):
            return self.net(states.reshape(len(act), n, *states.shape[1:]), agents).reshape(-1, 6)

        version = self.version_table[act, 0].repeat_interleave(n)
        ends, _, _ = greedy_search(q_fn, self.vol, self._eval_starts(act), cfg.history, cfg.scales, cfg.max_test_steps,
                                   version=version)
        target = self.targets[act].repeat_interleave(n, 0)
        hit = torch.linalg.norm((ends - target) * self.spacing, dim=1) <= cfg.converge_mm
        shares = hit.reshape(len(act), n).float().mean(1).cpu().tolist()
        for i, share in zip(act, shares):
            self.streak[i] = self.streak[i] + 1 if share >= cfg.converge_share else 0
            if self.streak[i] >= 2:
                self._freeze(i)
        return shares

    def _freeze(self, i: int) -> None:
        self.active[i] = False
        self.converged_at[i] = self.updates_done
        self._frozen[i] = {name: p[i].detach().clone() for name, p in self.net.named_parameters()}
        log.info("agent %d converged at update %d (greedy searches within %g mm from %.0f%% of the starts twice): "
                 "it stops learning", i, self.updates_done, self.cfg.converge_mm, 100 * self.cfg.converge_share)

    @torch.no_grad()
    def _restore_frozen(self) -> None:
        """Frozen agents keep their weights: the optimiser's momentum would move them without a gradient."""
        if not self._frozen:
            return
        params = dict(self.net.named_parameters())
        for i, saved in self._frozen.items():
            for name, value in saved.items():
                params[name][i].copy_(value)

    def _log(self, t0):
        w = self._window.cpu().numpy()  # the only wait for the device: once per log line
        ep = np.maximum(w[1], 1)
        nan = np.where(w[1] > 0, 1.0, np.nan)
        for i in range(self.b):
            self.log_rows[i].append({
                "update": self.updates_done,
                "env_steps": self.env_steps,
                "seconds": round(time.time() - t0, 2),
                "epsilon": round(self.epsilon(), 3),
                "loss": float(w[0, i] / self._window_updates) if self._window_updates else float("nan"),
                "episode_reward": float(w[2, i] / ep[i] * nan[i]),
                "success_rate": float(w[3, i] / ep[i] * nan[i]),
                "final_distance_mm": float(w[4, i] / ep[i] * nan[i]),
                "episodes": int(w[1, i]),
                "learning": int(self.active[i]),
            })
        last = [rows[-1] for rows in self.log_rows]
        self._clear_window()
        log.info("update %s: %d agent%s, mean loss %.4f reward %.2f success %.2f final %.1f mm",
                 progress(self.updates_done, self.cfg.updates, time.time() - t0), self.b, "s" if self.b > 1 else "",
                 *(float(np.nanmean([r[k] for r in last])) if any(np.isfinite(r[k]) for r in last) else float("nan")
                   for k in ("loss", "episode_reward", "success_rate", "final_distance_mm")))

    def train(self, log_every: int = 50, checkpoint=None, checkpoint_every: int = 200):
        """Run until ``cfg.updates`` updates; resumable from ``checkpoint`` (a path) if it exists.
        Returns every agent's training log (a list of rows per agent)."""
        cfg = self.cfg
        t0 = time.time()
        if not self.started:
            self._reset_where(torch.ones(self.n_total, dtype=torch.bool, device=self.device))
            self.started = True
        while self.replay.size < min(cfg.warmup, cfg.replay):
            self._env_step()
        while self.updates_done < cfg.updates and any(self.active):
            self._env_step()
            self._update()
            if cfg.early_stop and self.updates_done >= cfg.min_updates and self.updates_done % cfg.check_every == 0:
                self.check_convergence()
            if self.updates_done % log_every == 0:
                self._log(t0)
            if checkpoint is not None and self.updates_done % checkpoint_every == 0:
                self.save_checkpoint(checkpoint)
        if self._window_updates:
            self._log(t0)
        return self.log_rows

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        return {
            "config": self.cfg.to_dict(),
            "agents": [asdict(a) for a in self.agents],
            "net": self.net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "opt": self.opt.state_dict(),
            "updates_done": self.updates_done,
            "env_steps": self.env_steps,
            "log_rows": self.log_rows,
            "rand": self.rand.state_dict(),
            "active": self.active, "streak": self.streak, "converged_at": self.converged_at, "frozen": self._frozen,
        }

    def save_checkpoint(self, path) -> None:
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(self.state_dict(), tmp)

    def load_checkpoint(self, path) -> None:
        """Resume: networks, optimiser and counters (the replay restarts from the current policies)."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        saved = [AgentSpec(**{**a, "target": tuple(a["target"]), "versions": a["versions"] and tuple(a["versions"])})
                 for a in state["agents"]]
        if saved != self.agents:
            raise ValueError(f"{path}: a checkpoint of other agents (targets, seeds or guidance differ)")
        if state.get("config") != self.cfg.to_dict():
            raise ValueError(f"{path}: a checkpoint of other training settings")
        self.net.load_state_dict(state["net"])
        self.target_net.load_state_dict(state["target_net"])
        self.opt.load_state_dict(state["opt"])
        self.updates_done = state["updates_done"]
        self.env_steps = state["env_steps"]
        self.log_rows = state["log_rows"]
        self.rand.load_state_dict(state["rand"])
        self.active, self.streak = list(state["active"]), list(state["streak"])
        self.converged_at, self._frozen = list(state["converged_at"]), dict(state["frozen"])
