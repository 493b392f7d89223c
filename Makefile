# ftassets: two commands do all the set-up on a fresh machine.
#   make run   create .venv if missing, install everything, materialize the whole loop
#   make test  create/update the same environment and run the test suite (every tier; what CI runs)
#   make test-fast  unit + Dagster integration tests without the slow ones (a few minutes)
#   make ui    dagster dev on 127.0.0.1 with this project loaded
#   make bench every benchmark in benchmarks/, figures appended to benchmarks/RESULTS.md (~45 min)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# FTASSETS_INSTANCE=postgres selects deploy/postgres/dagster.yaml (connection from FTASSETS_PG_* env vars)
export DAGSTER_HOME := $(if $(filter postgres,$(FTASSETS_INSTANCE)),$(CURDIR)/deploy/postgres,$(CURDIR))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test test-fast ui install clean-artifacts postgres-server bench

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch first and pinned: the local CPU wheel; an open range would pull GB of CUDA packages.
$(STAMP): $(PY) pyproject.toml requirements-nodeps.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps --require-hashes -r requirements-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ftassets run --config data/run_config.yaml

# The PostgreSQL-backed test starts its own server on loopback from Debian's `postgresql` binaries:
# installed here when missing and apt is usable (as root); otherwise that one test skips and says why.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian postgresql (server binaries for the Postgres test)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }; \
	  else echo "PostgreSQL server binaries not found: the Postgres-backed test will skip"; fi; }

test: $(STAMP) postgres-server
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest ftassets_tests/unit ftassets_tests/dagster -m "not slow"

ui: $(STAMP)
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# The five issue benchmarks plus the curation-quality ones, each appending its line to benchmarks/RESULTS.md.
# `run` first: the main-job figures come from its event log, and the others use the base model snapshot it makes
# (a rejected release still leaves every artifact the benchmarks need, hence the `-`).
bench: $(STAMP)
	-$(MAKE) run
	$(PY) benchmarks/main_job.py --append-results
	$(PY) benchmarks/training_throughput.py --examples 96 --batch 8 --append-results
	$(PY) benchmarks/training_profile.py --append-results
	$(PY) benchmarks/platform_overhead.py --steps 20 --rounds 2 --append-results
	$(PY) benchmarks/curation_throughput.py --records 2000 --scale 2000,8000,32000 --append-results
	$(PY) benchmarks/eval_throughput.py --prompts 32 --append-results
	$(PY) benchmarks/incremental.py --append-results
	$(PY) benchmarks/pii_recall.py --append-results
	$(PY) benchmarks/dedup_quality.py --append-results

clean-artifacts:
	rm -rf data/artifacts storage history schedules
