"""PIN: a patch-based iterative network (Li et al., "Fast Multiple Landmark Localisation Using a
Patch-based Iterative Network", MICCAI 2018), trained patient-specifically like the agents.

The supervised rival of the reinforcement-learning agent. A CNN looks at the patch around the current
point and predicts both the displacement to the landmark (regression, in units of half the start box)
and the direction among the six axis directions +-x, +-y, +-z (classification: the axis of the largest
displacement component and its sign), trained jointly with
``loss = (1 - a) * mean squared displacement error + a * cross-entropy`` (``a`` = 0.5 in the paper).

Input: the paper's 2.5D patch, three orthogonal 2D patches (axial, coronal, sagittal planes through
the point) as channels, or a 3D patch (``input: 3d``); at several sampling strides (``scales``, voxels
between samples: a coarse one sees the whole start box, a fine one the detail), and for several
co-registered modalities; all of them stacked as channels.

Training: on the post-op scan and its augmented copies (the agents' augmentation: cavity filled with
tissue-like texture, smoothing, bias field, then per-batch gain, gamma and noise), points drawn in the
start box around the landmark (a share of them near it, for precision).

Inference, the paper's rule C: ``x <- x + P_max * d`` for ``iterations`` steps from the agents' 20
fixed start points, where ``d`` is the predicted displacement and ``P_max`` the highest class
probability (a confident network takes the full step); the prediction is the mean of the end points
(the paper averages them), ``spread_mm`` their mean distance to it, with the agents' fallback to the
rigidly aligned position beyond ``max_shift_mm``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..cohort.preproc_folder import PreprocFolder
from ..core import layout
from ..core.config import schema_field
from ..core.files import atomic_dir, write_table
from ..core.logutil import progress
from ..imaging import spatial
from .augment import augmented_versions
from ..core.device import seed_for, setup_device, write_device
from .patches import PatchVolume
from .search import Detection, detection_records, landmark_starts, model_paths, write_detections

log = logging.getLogger(__name__)

INPUTS = ("2.5d", "3d")


@dataclass
class PinConfig:
    """PIN parameters (config key ``pin``); defaults from the config schema."""

    input: str = schema_field("pin", "input")  # "2.5d": three orthogonal 2D patches as channels (the paper); "3d": one 3D patch
    patch: int = schema_field("pin", "patch")  # patch edge in samples (odd)
    scales: list = schema_field("pin", "scales")  # sampling strides in voxels, one set of channels each
    box_mm: float = schema_field("pin", "box_mm")  # training points and test starts lie in a box of this edge around the landmark
    near_fraction: float = schema_field("pin", "near_fraction")  # share of training points drawn within near_mm of the landmark
    near_mm: float = schema_field("pin", "near_mm")
    alpha: float = schema_field("pin", "alpha")  # loss weight of the classification
    unit_mm: float = schema_field("pin", "unit_mm")  # the regression predicts the displacement in this unit
    updates: int = schema_field("pin", "updates")
    batch: int = schema_field("pin", "batch")
    lr: float = schema_field("pin", "lr")
    versions: int = schema_field("pin", "versions")  # training volumes: the image and versions-1 augmented copies (as the agents)
    fill_cavity: bool = schema_field("pin", "fill_cavity")
    width: int = schema_field("pin", "width")
    n_starts: int = schema_field("pin", "n_starts")  # test: the agents' fixed start points
    iterations: int = schema_field("pin", "iterations")  # test: T steps of rule C
    max_shift_mm: float = schema_field("pin", "max_shift_mm")  # test: a prediction farther than this from the start centre falls back to it
    modalities: list = schema_field("pin", "modalities")  # channels; empty = the reference modality only

    def __post_init__(self):
        if self.input not in INPUTS:
            raise ValueError(f"pin.input {self.input!r}: expected one of {', '.join(INPUTS)}")
        if self.patch % 2 != 1 or self.patch < 11:
            raise ValueError(f"pin.patch {self.patch}: expected an odd number of at least 11")
        if not self.scales or min(self.scales) < 1:
            raise ValueError(f"pin.scales {self.scales}: expected positive integers")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "PinConfig":
        """From the config's ``pin`` section (``activate`` and ``device`` belong to the workflow)."""
        return cls(**{k: v for k, v in settings.items() if k not in ("activate", "device")})


def direction_class(d: torch.Tensor) -> torch.Tensor:
    """The class of displacements (N, 3): 2 * axis of the largest |component| + (1 if it is negative),
    in the order of the agents' actions (+x, -x, +y, -y, +z, -z)."""
    axis = d.abs().argmax(dim=1)
    negative = (d.gather(1, axis[:, None])[:, 0] < 0).long()
    return 2 * axis + negative


class PatchSampler:
    """Gathers PIN inputs at integer voxel positions from a :class:`PatchVolume`."""

    def __init__(self, volume: PatchVolume, cfg: PinConfig):
        self.vol, self.cfg = volume, cfg
        r = torch.arange(-(cfg.patch // 2), cfg.patch // 2 + 1)
        a, b = torch.meshgrid(r, r, indexing="ij")
        zero = torch.zeros_like(a)
        if cfg.input == "2.5d":  # planes normal to x (sagittal), y (coronal), z (axial)
            grid = torch.stack([torch.stack([zero, a, b], -1), torch.stack([a, zero, b], -1), torch.stack([a, b, zero], -1)])
        else:
            grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1)
        self.offsets = torch.cat([volume.flat_offsets(grid.reshape(-1, 3) * s) for s in cfg.scales])
        self.channels = volume.channels * len(cfg.scales) * (3 if cfg.input == "2.5d" else 1)

    def __call__(self, pos: torch.Tensor, version: torch.Tensor | None = None) -> torch.Tensor:
        p = self.cfg.patch
        x = self.vol.gather(self.vol.clamp(pos), self.offsets, version)  # (N, C, scales * planes * P^2 or P^3)
        tail = (p, p) if self.cfg.input == "2.5d" else (p, p, p)
        return x.reshape(x.shape[0], self.channels, *tail)


class PinNet(nn.Module):
    """Three convolutions and a fully connected layer; a regression head (3) and a classification head (6)."""

    def __init__(self, in_channels: int, patch: int = 21, width: int = 32, dims: int = 2, hidden: int = 128):
        super().__init__()
        conv, pool = (nn.Conv2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.MaxPool3d)
        self.features = nn.Sequential(
            conv(in_channels, width, 3), nn.ReLU(), pool(2),
            conv(width, 2 * width, 3), nn.ReLU(), pool(2),
            conv(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.Flatten(),
        )
        with torch.no_grad():
            n = self.features(torch.zeros(1, in_channels, *(patch,) * dims)).shape[1]
        self.hidden = nn.Sequential(nn.Linear(n, hidden), nn.ReLU())
        self.regression = nn.Linear(hidden, 3)
        self.classification = nn.Linear(hidden, 6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(self.features(x))
        return self.regression(h), self.classification(h)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per sample: random gain, gamma and noise (the agents' per-batch augmentation)."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    gain = torch.empty(shape, device=x.device).uniform_(0.85, 1.15, generator=gen)
    gamma = torch.exp(torch.empty(shape, device=x.device).uniform_(-0.3, 0.3, generator=gen))
    sigma = torch.empty(shape, device=x.device).uniform_(0.0, 0.04, generator=gen)
    noise = torch.randn(x.shape, device=x.device, generator=gen)
    return gain * torch.clamp(x, min=0) ** gamma + sigma * noise


class PinTrainer:
    """One patient-specific PIN: ``volumes`` (K, C, X, Y, Z), the landmark's voxel position ``target_vox``."""

    def __init__(self, volumes: np.ndarray, target_vox, cfg: PinConfig, seed: int, device="cpu", spacing=(1.0, 1.0, 1.0)):
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        vols = torch.as_tensor(volumes, dtype=torch.float32, device=self.device)
        self.vol = PatchVolume(vols, cfg.patch, max(cfg.scales), spacing)
        self.sampler = PatchSampler(self.vol, cfg)
        self.spacing = torch.as_tensor(spacing, dtype=torch.float32, device=self.device)
        self.half_mm = cfg.box_mm / 2
        self.target = torch.as_tensor(target_vox, dtype=torch.float32, device=self.device)
        self.net = PinNet(self.sampler.channels, cfg.patch, cfg.width, 2 if cfg.input == "2.5d" else 3).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.log_rows: list[dict] = []

    def sample(self, n: int):
        """n training points: (positions (n, 3) voxels, versions (n,), displacements to the target (n, 3) mm)."""
        u = torch.rand(n, 3, device=self.device, generator=self.gen) * 2 - 1
        near = int(round(n * self.cfg.near_fraction))
        half = torch.full((n, 1), self.half_mm, device=self.device)
        half[:near] = self.cfg.near_mm
        pos = self.vol.clamp(torch.round(self.target + u * half / self.spacing).long())
        version = torch.randint(0, self.vol.versions, (n,), device=self.device, generator=self.gen)
        disp = (self.target - pos) * self.spacing
        return pos, version, disp

    def step(self) -> dict:
        pos, version, disp = self.sample(self.cfg.batch)
        x = _augment(self.sampler(pos, version), self.gen)
        d_pred, logits = self.net(x)
        mse = ((d_pred - disp / self.cfg.unit_mm) ** 2).sum(1).mean()
        ce = nn.functional.cross_entropy(logits, direction_class(disp))
        loss = (1 - self.cfg.alpha) * mse + self.cfg.alpha * ce
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            err = torch.linalg.norm(d_pred * self.cfg.unit_mm - disp, dim=1).mean()
            acc = (logits.argmax(1) == direction_class(disp)).float().mean()
        return {"loss": loss.item(), "mse": mse.item(), "ce": ce.item(), "accuracy": acc.item(), "displacement_error_mm": err.item()}

    def train(self, log_every: int = 50) -> list[dict]:
        t0 = time.time()
        window: list[dict] = []
        for update in range(1, self.cfg.updates + 1):
            window.append(self.step())
            if update % log_every == 0 or update == self.cfg.updates:
                row = {"update": update, **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                       "seconds": round(time.time() - t0, 2)}
                self.log_rows.append(row)
                window = []
                log.info("update %s: loss %.4f displacement error %.2f mm direction accuracy %.2f",
                         progress(update, self.cfg.updates, time.time() - t0), row["loss"], row["displacement_error_mm"],
                         row["accuracy"])
        return self.log_rows


@torch.no_grad()
def localise(net: PinNet, cfg: PinConfig, volume, starts: np.ndarray, spacing=(1.0, 1.0, 1.0), device="cpu") -> Detection:
    """Rule C from every start at once: ``x <- x + P_max * d`` for ``cfg.iterations`` steps; centre = mean of the end points.
    ``volume``: (C, X, Y, Z) array, or a :class:`PatchVolume` on ``device`` (to share one between landmarks)."""
    device = torch.device(device)
    net = net.to(device).eval()
    vol = volume if isinstance(volume, PatchVolume) else PatchVolume(
        torch.as_tensor(volume, dtype=torch.float32, device=device), cfg.patch, max(cfg.scales), spacing)
    sampler = PatchSampler(vol, cfg)
    sp = torch.as_tensor(spacing, dtype=torch.float32, device=device)
    upper = (vol.shape - 1).float()
    x = torch.as_tensor(starts, dtype=torch.float32, device=device)
    traj = [x.clone()]
    for _ in range(cfg.iterations):
        d, logits = net(sampler(torch.round(x).long()))
        p_max = torch.softmax(logits, dim=1).max(dim=1).values
        x = torch.minimum(torch.clamp(x + p_max[:, None] * d * cfg.unit_mm / sp, min=0), upper)
        traj.append(x.clone())
    ends = x.cpu().numpy().astype(float)
    centre = ends.mean(axis=0)
    spread = np.linalg.norm((ends - centre) * np.asarray(spacing), axis=1)
    n = len(starts)
    return Detection(centre, ends, torch.stack(traj).cpu().numpy().astype(float), np.full(n, cfg.iterations), spread)


# ------------------------------------------------------------------------------------ patients
def train_pins(preproc_dir, cfg: PinConfig, seed: int, out_dir, device: str = "auto", threads: int | None = None,
               lesions_dir=None) -> list[dict]:
    """Train the PIN of every post-op landmark of a patient on the post-op scan, in one job (one after the
    other: the patient's scan is read once); write ``out_dir`` whole or not at all: per landmark its model
    (``<landmark>.pt``) and training log (``<landmark>_training.tsv``)."""
    dev = setup_device(device, threads)
    folder = PreprocFolder(preproc_dir, lesions=lesions_dir)
    patient = folder.patient
    mods = folder.resolve_modalities(cfg.modalities, "pin.modalities")
    post, affine = folder.stack("post", mods)
    brain, cavity = folder.mask("post", "brain"), folder.lesion("post")
    states = []
    with atomic_dir(out_dir) as tmp:
        write_device(tmp, dev, device)
        for landmark in [str(lm) for lm in folder.landmarks("post")["landmark"]]:
            _, target = folder.target(landmark, affine)
            s = seed_for(seed, patient, landmark, "pin")
            versions = augmented_versions(post, brain, cavity, cfg.versions, np.random.default_rng(s), cfg.fill_cavity)
            t0 = time.time()
            trainer = PinTrainer(versions, target, cfg, s, dev, spatial.spacing_of(affine))
            rows = trainer.train()
            seconds = time.time() - t0
            state = {"state_dict": trainer.net.state_dict(), "config": cfg.to_dict(), "patient": patient,
                     "landmark": landmark, "modalities": mods, "seed": s, "in_channels": trainer.sampler.channels,
                     "train_seconds": seconds, "device": str(dev), "torch": torch.__version__}
            torch.save(state, tmp / layout.model_name(landmark))
            write_table(pd.DataFrame(rows), tmp / layout.training_name(landmark))
            log.info("%s landmark %s (pin): %d updates in %.1f s on %s, last displacement error %.2f mm",
                     patient, landmark, cfg.updates, seconds, dev, rows[-1]["displacement_error_mm"])
            states.append(state)
    return states


def load_pin(path, device="cpu") -> tuple[PinNet, dict]:
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = PinConfig(**state["config"])
    net = PinNet(state["in_channels"], cfg.patch, cfg.width, 2 if cfg.input == "2.5d" else 3)
    net.load_state_dict(state["state_dict"])
    return net, state


def redetect_pin(preproc_dir, models, seed: int, out_csv, out_ends, out_traj, device: str = "auto",
                 threads: int | None = None, detection: dict | None = None) -> pd.DataFrame:
    """Localise every landmark in the pre-op scan with its PIN from the agents' fixed start points.

    Writes ``landmark,x,y,z,spread_mm,fallback,seconds`` (pre-op world RAS mm), the end points and the
    trajectories, as the agents' redetection does. ``detection`` (the config's :data:`..core.config.PIN_DETECTION_KEYS`)
    overrides what the models were trained with.
    """
    dev = setup_device(device, threads)
    folder = PreprocFolder(preproc_dir)
    start_lm = folder.landmarks("post")
    rows, ends, trajs = [], [], []
    padded: dict = {}  # one PatchVolume on the device per modalities and patch geometry, shared by the landmarks
    for path in model_paths(models, [str(lm) for lm in start_lm["landmark"]]):
        net, state = load_pin(path, dev)
        cfg = dataclasses.replace(PinConfig(**state["config"]), **(detection or {}))
        pre, affine = folder.stack("pre", state["modalities"])
        spacing = spatial.spacing_of(affine)
        key = (tuple(state["modalities"]), cfg.patch, max(cfg.scales))
        if key not in padded:
            padded[key] = PatchVolume(torch.as_tensor(pre, dtype=torch.float32, device=dev), cfg.patch, max(cfg.scales), spacing)
        lid = state["landmark"]
        centre_world, starts = landmark_starts(start_lm, lid, affine, cfg.n_starts, cfg.box_mm, seed)
        t0 = time.time()
        det = localise(net, cfg, padded[key], starts, spacing, dev)
        rec = detection_records(lid, det, starts, affine, centre_world, cfg.max_shift_mm, time.time() - t0, "pin")
        rows.append(rec[0])
        ends += rec[1]
        trajs += rec[2]
    return write_detections(rows, ends, trajs, out_csv, out_ends, out_traj)
