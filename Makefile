# Set-up and entry points. The venv is built from requirements.lock (exact pins) so that
# torch resolves to the 2.13.0 CPU wheel on CPU machines (shared/OFFLINE.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
# Python caches bytecode in __pycache__/ (git-ignored) under every target here, even where the
# machine sets PYTHONDONTWRITEBYTECODE (these do): otherwise every `repro stage` process
# compiles the repro modules it imports from source again, and every pytest worker re-parses
# and rewrites the asserts of all test modules (pytest caches that only where Python may
# write bytecode): the fast tests (pytest -m "not slow" -n 2) took 204-206 s with it set and
# 175 s without, caches removed first as on a fresh clone, 2 cores (issue 19). Site-packages
# are compiled once by the install.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install quickstart example-architectures example-lr-sweep example-ladder test test-deps test-fast compile bench-curation bench-training bench-numerics bench-evaluation bench-stages calibrate-language debian-corpus gpu-check gpu-wheels

# The lock is installed by uv (pinned in the lock itself, from PyPI): 58 s against pip's 3 min 26 s for
# the same pins on a quiet 2-core machine (issue 19), bytecode compiled as pip does (these
# machines set PYTHONDONTWRITEBYTECODE, so nothing would compile it later). uv does not read
# pip's configuration, so pip's find-links (where a machine keeps wheels such as the CPU
# torch build) are handed to it. (`=`, not `:=`: read only when the install recipe runs.)
UV_VERSION = $(shell sed -n 's/^uv==//p' requirements.lock)
FIND_LINKS = $(strip $(PIP_FIND_LINKS) $(shell $(PY) -m pip config get global.find-links 2>/dev/null))
UV := $(BIN)/uv pip install --python $(BIN)/python --quiet

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) --compile-bytecode $(addprefix --find-links ,$(sort $(FIND_LINKS))) -r requirements.lock
	$(UV) --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

# Fresh machine: venv + pinned deps, check the generated pipeline is current, fetch what a
# shared DVC cache already holds (only when a default remote is configured: README "Sharing
# the DVC cache"; an object missing there, or a remote out of reach, is built here instead),
# rebuild what is left, then a first screen: the report, its headline, what to try next.
quickstart: install
	$(BIN)/repro compile --check
	@if $(BIN)/dvc remote default >/dev/null 2>&1; then \
	  echo "dvc pull --allow-missing dvc.yaml  (default remote: $$($(BIN)/dvc remote default))"; \
	  $(BIN)/dvc pull --allow-missing dvc.yaml || echo "note: dvc pull failed; building locally instead"; \
	fi
	$(BIN)/dvc repro
	@$(BIN)/repro summary

# The example pipelines (examples/<name>/dvc.yaml, compiled from specs/examples/<name>/):
# each builds what it needs of the default pipeline first (once), then its own stages.
example-architectures: install
	$(BIN)/repro compile --check
	$(BIN)/dvc repro examples/architectures/dvc.yaml

example-lr-sweep: install
	$(BIN)/repro compile --check
	$(BIN)/repro sweep specs/examples/lr-sweep/qs-lr.yaml

example-ladder: install
	$(BIN)/repro compile --check
	$(BIN)/repro fit specs/examples/ladder/qs-ladder.yaml

compile: install
	$(BIN)/repro compile

# What the tests need beyond the venv, from the distribution's packages when missing (a
# no-op when present; a note, and the tests that need it skip, where it cannot be installed):
# headless Chromium for the browser test, tesseract for the OCR tests. CI (.ci/run) runs this.
test-deps:
	scripts/install-test-browser.sh
	scripts/install-test-ocr.sh

# One pytest worker per CPU (pytest-xdist). `--dist loadscope` runs each test module on one
# worker, in file order: module fixtures are made once, and the tests that change one DVC
# workspace test after test (test_e2e.py, faults/) see it as when run alone. (`loadgroup`
# groups nothing with pytest 9.2: xdist 3.8 renames node ids through `item._nodeid`, which
# pytest 9.2 no longer reads.) Modules go out in the order tests/conftest.py gives them
# (expensive first), not xdist's (most tests first). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: install test-deps
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

# Benchmarks and calibrations (run by hand; see bench/README.md).
bench-curation: install
	$(BIN)/python -m bench.curation

bench-training: install
	$(BIN)/python -m bench.training

bench-numerics: install
	$(BIN)/python -m bench.numerics_cost

bench-evaluation: install
	$(BIN)/python -m bench.evaluation

bench-stages: install
	$(BIN)/python -m bench.stage_overhead

calibrate-language: install
	$(BIN)/python bench/calibrate_language.py --write-spec

# Optional real multilingual corpus for specs/reference/debian-reference.yaml (Debian only).
debian-corpus:
	scripts/fetch-debian-reference.sh data/external/debian-reference

# The one-call GPU check (issue 17; scripts/gpu-check.sh): bench at 360m and 1.7b, then
# specs/gpu/gpu-360m.yaml through every stage to train -> evaluate; a JSON summary in
# gpu-check-out/ (or $$OUT). On a bare GPU machine it installs .gpu-wheels/ first.
gpu-check:
	scripts/gpu-check.sh

# Wheels of what the check imports beyond a CUDA torch + transformers image (Python 3.12,
# x86-64), into .gpu-wheels/ (git-ignored; carry it to the GPU machine, ~45 MB).
GPU_WHEELS := .gpu-wheels
GPU_PIP := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3) -m pip
gpu-wheels:
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(GPU_PIP) download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d $(GPU_WHEELS) -r scripts/gpu-wheels.txt
	$(GPU_PIP) wheel --quiet --no-deps -w $(GPU_WHEELS) -r scripts/gpu-wheels-sdist.txt
	@du -sh $(GPU_WHEELS)
