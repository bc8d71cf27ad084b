# radpilot: `make demo` runs the main job, `make test` runs the tests; both set up .venv.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= radpilot-data

.PHONY: install peers test lint typecheck demo bench reference-model clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

# dcmtk and Orthanc are the independent DICOM peers of the integration tests, Chromium
# the browser of the web app tests. Installed when possible (root + apt); otherwise their
# tests skip with the reason shown.
peers:
	@if command -v storescu >/dev/null && command -v dciodvfy >/dev/null && [ -x /usr/sbin/Orthanc ] \
	  && command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk dicom3tools orthanc orthanc-dicomweb chromium >/dev/null; \
	else echo "note: dcmtk/orthanc/chromium missing and not root: their tests will skip"; fi

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

test: install peers lint typecheck
	$(BIN)/pytest

demo: install
	$(BIN)/radpilot --data-dir $(DATA_DIR) demo

# Trains the reference model from scratch (PneumoniaMNIST in ../shared/data, 2 threads,
# about 5 minutes here) and replaces the committed package with the result.
REF_RUN ?= build/reference-model
reference-model: install
	$(BIN)/radpilot --data-dir $(DATA_DIR) train models/reference/train.yaml --output $(REF_RUN) --overwrite
	rm -rf models/reference/package
	cp -r $(REF_RUN)/package models/reference/package
	sha256sum models/reference/package/model.pt

bench: install peers
	-$(BIN)/python -m bench.cstore
	$(BIN)/python -m bench.bench_deid
	$(BIN)/python -m bench.bench_reference --training

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
