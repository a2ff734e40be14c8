"""Devices and seeds of the jobs that run PyTorch (agents, PIN, the second registration); torch is imported
when a device is asked for, not with this module."""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path

from . import layout
from .errors import InputError
from .files import atomic_path

log = logging.getLogger(__name__)


def visible_gpus() -> str:
    """What says that this job has a GPU, whatever PyTorch can do with it ("" when nothing does): a
    ``CUDA_VISIBLE_DEVICES`` that names devices (Snakemake's and SLURM's GPU jobs set it), SLURM's GPU
    variables, or an NVIDIA device file."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:  # set, even empty: it says which GPUs this job may use, whatever the node has
        return f"CUDA_VISIBLE_DEVICES={cvd}" if cvd.strip() not in ("-1", "NoDevFiles", "") else ""
    signs = [f"{var}={os.environ[var]}" for var in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS") if os.environ.get(var)]
    if Path("/dev/nvidia0").exists():
        signs.append("/dev/nvidia0")
    return ", ".join(signs)


def gpu_problem(requested: str, torch) -> str:
    """Why a GPU that was asked for (``requested`` cuda) or is visible (:func:`visible_gpus`) goes unused,
    else ""."""
    if torch.cuda.is_available() or requested == "cpu":  # a job told to use the CPU does what it was told
        return ""
    visible = visible_gpus()
    if not (requested.startswith("cuda") or visible):
        return ""
    why = ("a CPU-only build" if torch.version.cuda is None
           else f"built for CUDA {torch.version.cuda}, but it finds no usable GPU or driver")
    what = f"device {requested} was asked for" if requested.startswith("cuda") else f"a GPU is visible ({visible})"
    return (f"{what} but PyTorch {torch.__version__} cannot use it ({why}): install the CUDA build of torch "
            f"into .venv (README, GPU and SLURM)")


def pick_device(requested: str = "auto"):
    """The torch device for ``requested`` (auto: CUDA when PyTorch can use it, else the CPU). An explicit
    ``cuda`` that PyTorch cannot use is an :class:`InputError` that says why."""
    import torch

    problem = gpu_problem(requested, torch)
    if requested.startswith("cuda") and problem:
        raise InputError(problem)
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def setup_device(device: str, threads: int | None):
    """Torch threads and device of a job; logs what the job sees (a SLURM GPU job sets CUDA_VISIBLE_DEVICES)
    and warns when a visible GPU goes unused (the job then runs on the CPU, tens of times slower)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    log.info("device %s (requested %s, CUDA_VISIBLE_DEVICES=%s, cuda available: %s), %d torch threads", dev, device,
             os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), torch.cuda.is_available(), torch.get_num_threads())
    if problem := gpu_problem(device, torch):
        log.warning("%s; this job runs on the CPU, tens of times slower", problem)
    return dev


def write_device(folder, dev, requested: str) -> None:
    """Write, into an output folder of a PyTorch job, the device it ran on and the warning of
    :func:`gpu_problem`, if any (:func:`.layout.device_file`; the report shows the warnings)."""
    import torch

    record = {"device": str(dev), "requested": requested, "torch": torch.__version__,
              "cuda_available": bool(torch.cuda.is_available()), "visible_gpus": visible_gpus(),
              "warning": gpu_problem(requested, torch)}
    with atomic_path(layout.device_file(folder)) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")


def read_device_warning(folder) -> str:
    """The GPU warning a PyTorch job left in its output folder ("" when none, or no record)."""
    path = Path(layout.device_file(folder))
    return json.loads(path.read_text()).get("warning", "") if path.exists() else ""


def seed_for(seed: int, *keys) -> int:
    """A 31-bit seed from the master seed and identifiers (patient, landmark, variant)."""
    return (int(seed) * 1_000_003 + zlib.crc32("/".join(map(str, keys)).encode())) % (2**31 - 1)
