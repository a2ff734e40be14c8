#!/usr/bin/env bash
# Snakemake runs this inside the new radiomics environment (envs/radiomics.yaml), once, after creating it:
# pyradiomics 3.0.1 has no wheel and builds only without build isolation, against the numpy, setuptools,
# wheel and versioneer the environment file installed. The version is constraints.txt's (a test checks it).
set -euo pipefail
python -m pip install --no-build-isolation pyradiomics==3.0.1
