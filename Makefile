# landmark-lora: `make run` and `make test` each set up .venv on their own.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Offline and quiet for everything make starts. landmark_lora/env.py applies the same defaults
# inside the package's entry points; these cover what starts outside them: pytest and the servers
# and tools the tests launch (mlflow server, Prefect's test server, dvc, moto).
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: install run test test-e2e test-toyworld test-compile lint bench bench-data bench-reference bench-nightly infra-smoke clean-data help

help:
	@echo "make run    - set up .venv, then run the main job on the embedded default"
	@echo "make test   - set up .venv, then run the test suite"
	@echo "make test-e2e - lineage replays and DVC experiments in scratch repos (minutes; CI runs it too)"
	@echo "make test-toyworld - the end-to-end checks on the toy-world base (minutes; not in make test)"
	@echo "make test-compile - train.compile's training runs (cold inductor builds, 5-25 minutes; not in CI)"
	@echo "make lint   - ruff (src tests tools flows) and mypy (bottom layer + domain modules); make test enforces both"
	@echo "make bench  - benchmarks (results in reports/bench.json and docs/benchmarks.md)"
	@echo "make bench-data - ingest/validate/preprocess on 12-MP photos, 200/1000/5000 (+50) (reports/bench_data.json)"
	@echo "make bench-reference REFERENCE_SCRIPT=path - ours vs diffusers' train_text_to_image_lora.py (reports/bench_reference.json)"
	@echo "make bench-nightly - the nightly run's overhead: 3 x landmark-lora run in a scratch clone (reports/bench_nightly.json)"
	@echo "make infra-smoke - real mlflow server on PostgreSQL + S3 (moto), the pipeline over HTTP (needs 127.0.0.1:5432)"

install: $(STAMP)

# pip compiles every installed file to bytecode one at a time: about 60 % of the install's CPU
# (27,000 files, torch the most). Installing with --no-compile and compiling the same files
# afterwards on every core halves that part on 2 cores. Compile errors are skipped, as pip skips
# them (torch and whenever ship modules with Python 3.12 syntax). Not left to import time:
# with PYTHONDONTWRITEBYTECODE set, every process would compile what it imports again.

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -c constraints.txt -e ".[dev]"
	$(BIN)/python -c 'import compileall, sysconfig; compileall.compile_dir(sysconfig.get_path("purelib"), quiet=2, workers=0)'
	touch $(STAMP)

run: install
	$(BIN)/landmark-lora run

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not toyworld and not e2e and not compile"

# Lineage replays (landmark-lora reproduce), DVC experiments (dvc exp run, the queue) and the run-cache
# flow (a reset MLflow store beside DVC's cache), each in a scratch git + DVC repository: several
# pipeline runs, about 6-8 minutes on 2 cores. .ci/run runs it after make test. What runs where:
# README.md, "Tests".
test-e2e: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "e2e"

# The end-to-end checks on the toy-world base (issue 12's promotion gate on real learning): about
# 4 minutes on 2 CPU cores, so kept out of `make test`; the same decision rules run there on the tiny base.
test-toyworld: install
	$(BIN)/python -m pytest -q -m toyworld

# train.compile's training runs against eager (losses, adapter keys, resume, two processes): each
# builds inductor kernels from a cold cache, 5-25 minutes on 2 cores, so neither make test nor CI runs them.
test-compile: install
	$(BIN)/python -m pytest -q -m compile

# Rules and the modules mypy checks are in pyproject.toml ([tool.ruff], [tool.mypy]); make test runs
# the same two through tests/test_lint.py.
lint: install
	$(BIN)/ruff check src tests tools flows
	$(BIN)/mypy --cache-dir .cache/mypy

# tools/ are the checkout's dev tools, run as modules from the repository root (never in the wheel).
bench: install
	$(BIN)/python -m tools.bench

# The data path on phone-size photos (issue 15): about 2 x 3.5 MB of disk per photo while a size
# runs, and tens of minutes at 5000 photos on 2 cores. SIZES="200 1000" for a shorter run.
SIZES ?= 200 1000 5000
bench-data: install
	$(BIN)/python -m tools.bench_data --sizes $(SIZES)

# Ours against diffusers' reference LoRA script on the same tiny base, data and settings (issue 15;
# docs/benchmarks.md). The script is never vendored nor fetched here: get it once at the commit the
# comparison names, e.g. git clone https://github.com/huggingface/diffusers && git -C diffusers
# checkout 58eb52c080, then REFERENCE_SCRIPT=diffusers/examples/text_to_image/train_text_to_image_lora.py.
# It needs `datasets` (the bench extra, installed here from the package index). About 5 minutes on 2 loaded cores.
REFERENCE_SCRIPT ?=
bench-reference: install
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python -m tools.bench_reference --script "$(REFERENCE_SCRIPT)"
# The nightly run's fixed overhead (issue 15): in a scratch clone, a first `landmark-lora run`, a
# second with 3 new photos, a third with nothing new (the skip path), then each stage under
# python -X importtime. Short training and evaluation (the overhead leaves the loops out anyway);
# about 5 minutes on 2 idle cores.
bench-nightly: install
	$(BIN)/python -m tools.bench_nightly

# The server deployment path without Docker (docs/deploy.md). `make test` runs it too, through
# tests/infra/test_infra_smoke.py, whenever PostgreSQL answers on 127.0.0.1:5432.
infra-smoke: install
	$(BIN)/python -m tools.infra_smoke

clean-data:
	@echo "data/raw and data/quarantine hold user photos and are never removed by make."
	rm -rf data/processed reports .cache/preprocess
