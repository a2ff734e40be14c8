"""Fixtures of the workflow tests: one shared real Snakemake run on a tiny cohort."""

import pytest

from workflow_helpers import ROOT, TINY, run, workdir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow on one demo patient with a tiny agent budget: a real Snakemake run (shared by tests).
    It runs with ``CUDA_VISIBLE_DEVICES=0``, as a GPU job would: without CUDA, the PyTorch jobs warn."""
    wd = workdir(tmp_path_factory.mktemp("run"), ["tiny01"], overrides=TINY)
    run(["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile", str(wd / "config" / "config.yaml"), "--cores", "2"],
        env={"CUDA_VISIBLE_DEVICES": "0"})
    return wd
