# Every target sets itself up: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Runs are self-contained: Prefect's database, cached results and intermediate files live in .e2ep/.
export E2EP_HOME ?= $(CURDIR)/.e2ep
export PREFECT_HOME ?= $(E2EP_HOME)/prefect
export PREFECT_LOCAL_STORAGE_PATH ?= $(E2EP_HOME)/results
export PREFECT_RESULTS_PERSIST_BY_DEFAULT ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export LITELLM_LOCAL_MODEL_COST_MAP ?= True
# A development copy of the data beside the checkout is used when present; otherwise e2ep downloads.
export E2EP_DATA_DIR ?= $(abspath $(wildcard ../shared/data))
# TMDB metadata joined to ML-100K items, for the default experiment's profiles, when that copy has it.
export E2EP_ML100K_METADATA ?= $(wildcard $(E2EP_DATA_DIR)/tmdb/ml-100k_items_tmdb.csv.gz)
# The paper authors' 800k-rating ML-1M training split, for ML-1M-scale benchmarks, when that copy has it.
export E2EP_ML1M_RATINGS ?= $(wildcard $(E2EP_DATA_DIR)/seed_repo/ml-1m/seed_u1base_train_no_timestamps.csv.gz)

.PHONY: install eval ablations lint test bench serve clean clean-cache

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## make eval [ARGS="--models lightgcn --folds 1"]: the ML-100K 5-fold experiment; tables on stdout and in artifacts/
## (the default run, with no ARGS, enriches items from E2EP_ML100K_METADATA when that file exists)
eval: install
	$(BIN)/e2ep run $(if $(ARGS),$(ARGS),$(if $(E2EP_ML100K_METADATA),--metadata $(E2EP_ML100K_METADATA)))

## make ablations: the same experiment plus the paper's GAT ablations (configs/ablations.toml), as gat/<name> rows
ablations: install
	$(BIN)/e2ep run --config configs/ablations.toml $(if $(E2EP_ML100K_METADATA),--metadata $(E2EP_ML100K_METADATA)) $(ARGS)

## make lint: ruff's checks and formatting (`.venv/bin/ruff format .` fixes the latter) and pyright's type checks
## (pyproject.toml: basic everywhere, near-strict in models/ and evaluation/)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright

## make test [TEST_WORKERS=0]: lint, then the suite, spread over one process per core (at most 4; 0: all in this process)
TEST_WORKERS ?= auto
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 $(ARGS)

## make bench: wall time and peak memory per stage on ML-100K and the 800k-rating ML-1M split
bench: install
	$(BIN)/e2ep bench $(ARGS)

## make serve [PREFECT_PORT=4200]: a local Prefect server on 127.0.0.1 serving prefect.yaml's deployments; then
## `PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/prefect deployment run 'experiment/ml-100k'`. Ctrl-C stops both.
PREFECT_PORT ?= 4200
serve: install
	$(BIN)/python -m app.serve --host 127.0.0.1 --port $(PREFECT_PORT)

clean-cache:
	rm -rf .e2ep

clean: clean-cache
	rm -rf $(VENV) *.egg-info
