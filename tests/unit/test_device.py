"""Issue 30: a GPU that is visible or asked for but that PyTorch cannot use is said, not silently skipped."""

import json
import logging

import pytest
import torch

from landmarkflow.core import device, layout
from landmarkflow.core.errors import InputError

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="PyTorch can use a GPU here: nothing to warn about")


def test_a_visible_gpu_that_pytorch_cannot_use_is_a_warning_and_the_job_runs_on_the_cpu(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level(logging.WARNING):
        dev = device.setup_device("auto", 1)
    assert dev.type == "cpu"
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "a GPU is visible (CUDA_VISIBLE_DEVICES=0" in warning[0]
    assert f"PyTorch {torch.__version__} cannot use it" in warning[0] and "tens of times slower" in warning[0]
    if torch.version.cuda is None:
        assert "a CPU-only build" in warning[0]
    device.write_device(tmp_path, dev, "auto")
    record = json.loads((tmp_path / layout.DEVICE).read_text())
    assert record["device"] == "cpu" and record["visible_gpus"].startswith("CUDA_VISIBLE_DEVICES=0")
    assert device.read_device_warning(tmp_path) == record["warning"] != ""


def test_no_gpu_anywhere_is_no_warning(monkeypatch, caplog, tmp_path):
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
        monkeypatch.delenv(var, raising=False)
    if device.visible_gpus():
        pytest.skip(f"this machine shows a GPU ({device.visible_gpus()})")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # a job told to use none
    with caplog.at_level(logging.WARNING):
        dev = device.setup_device("auto", 1)
    assert dev.type == "cpu" and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    device.write_device(tmp_path, dev, "auto")
    assert device.read_device_warning(tmp_path) == "" and device.read_device_warning(tmp_path / "none") == ""


def test_an_explicit_cuda_device_pytorch_cannot_use_is_an_error_that_says_why():
    with pytest.raises(InputError, match=r"device cuda:0 was asked for but PyTorch .* cannot use it .*install the CUDA build"):
        device.pick_device("cuda:0")


def test_a_job_told_to_use_the_cpu_does_not_warn(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level(logging.WARNING):
        assert device.setup_device("cpu", 1).type == "cpu"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # set and empty: this job may use no GPU, whatever the node has
    assert device.visible_gpus() == ""
