# Two entry points: `make demo` and `make test`. Both create .venv and install everything.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
SEEDS  ?= 42,1,2
SNAKEMAKE := $(BIN)/snakemake

.PHONY: env demo smoke test lint dryrun clean browser benchmark seeds

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Marker file: re-install when the project's dependency files change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q --upgrade pip
	# pyradiomics 3.x needs numpy, setuptools, wheel and versioneer present and no build isolation
	$(BIN)/pip install -q -c constraints.txt numpy setuptools wheel versioneer
	# torch: the CPU build here; on a GPU machine install the CUDA build first (see README)
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt --no-build-isolation pyradiomics
	$(BIN)/pip install -q -c constraints.txt antspyx
	$(BIN)/pip install -q -c constraints.txt -e '.[agents,ants,bids,workflow,test]'
	# the SLURM executor without its numpy floor (see constraints.txt; a test checks its other requirements)
	$(BIN)/pip install -q -c constraints.txt --no-deps snakemake-executor-plugin-slurm
	touch $@

env: $(VENV)/.installed

demo: env
	$(SNAKEMAKE) --cores $(CORES) --printshellcmds

# one small demo patient through every stage with a tiny budget (config/smoke.yaml; the tests run the same file)
smoke: env
	$(SNAKEMAKE) --cores $(CORES) --configfile config/smoke.yaml

# accuracy over workflow seeds: one full run per seed, each in results/seeds/seed-S/ (about 25 min each on 2 cores), then results/seeds/summary.tsv
seeds: env
	$(BIN)/landmarkflow seeds --seeds $(SEEDS) --cores $(CORES)

dryrun: env
	$(SNAKEMAKE) -n --quiet rules

lint: env
	$(BIN)/ruff check .
	$(SNAKEMAKE) --lint

# Debian's chromium renders the report in the browser test (installed when missing and we are root)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium missing and not root: the browser test will be skipped"; }

test: env browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

benchmark: env
	$(BIN)/python benchmarks/agent_benchmark.py $(if $(wildcard results/demo01/preproc/preproc.json),--preproc results/demo01/preproc)

clean:
	rm -rf results .snakemake
