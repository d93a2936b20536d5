# landmark-lora: `make run` and `make test` each set up .venv on their own.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install run test bench infra-smoke clean-data help

help:
	@echo "make run    - set up .venv, then run the main job on the embedded default"
	@echo "make test   - set up .venv, then run the test suite"
	@echo "make bench  - benchmarks (results in reports/bench.json and docs/benchmarks.md)"
	@echo "make infra-smoke - real mlflow server on PostgreSQL + S3 (moto), the pipeline over HTTP (needs 127.0.0.1:5432)"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/landmark-lora run

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: install
	$(BIN)/python -m landmark_lora.bench

# The server deployment path without Docker (docs/deploy.md). `make test` runs it too, through
# tests/infra/test_infra_smoke.py, whenever PostgreSQL answers on 127.0.0.1:5432.
infra-smoke: install
	$(BIN)/python -m landmark_lora.infra_smoke

clean-data:
	@echo "data/raw and data/quarantine hold user photos and are never removed by make."
	rm -rf data/processed reports .cache/preprocess
