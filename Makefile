# Set-up and entry points. The venv is built from requirements.lock (exact pins) so that
# torch resolves to the 2.13.0 CPU wheel on CPU machines (shared/OFFLINE.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install quickstart test test-fast compile bench-curation bench-training bench-evaluation calibrate-language debian-corpus

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

# Fresh machine: venv + pinned deps, check the generated pipeline is current, rebuild everything.
quickstart: install
	$(BIN)/repro compile --check
	$(BIN)/dvc repro

compile: install
	$(BIN)/repro compile

# The browser test needs headless Chromium: installed from the distribution's packages when
# missing (a no-op when present; a note, and the test skips, where it cannot be installed).
test: install
	scripts/install-test-browser.sh
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Benchmarks and calibrations (run by hand; see bench/README.md).
bench-curation: install
	$(BIN)/python -m bench.curation

bench-training: install
	$(BIN)/python -m bench.training

bench-evaluation: install
	$(BIN)/python -m bench.evaluation

calibrate-language: install
	$(BIN)/python bench/calibrate_language.py --write-spec

# Optional real multilingual corpus for specs/examples/debian-reference.yaml (Debian only).
debian-corpus:
	scripts/fetch-debian-reference.sh data/external/debian-reference
