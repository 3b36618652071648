# Thin wrapper: bootstrap .venv when missing, then call tal_kit or pytest.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-setup build-ext clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
# setuptools warns at length on every editable install that folders named like the package shadow it (ours is the package)
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

## Run the demo reproduction end to end (generates data/demo when missing) and print the results table.
demo: $(STAMP)
	$(PY) -m tal_kit reproduce --config demo

## Run the test suite (fetches the test-only oracle and a headless browser when they can be had).
# One OpenMP thread per process: the suite runs several processes at once (pytest, notebook kernels, gloo ranks),
# and on a small machine competing OpenMP pools spin-wait and run 10-20x slower.
# Tests run in parallel (pytest-xdist), one worker per core, at most 8; --dist loadgroup keeps the tests that share an
# expensive module fixture on one worker (tests/conftest.py). PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 8 ] && n=8; echo $$n)
test: $(STAMP) test-setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

test-setup: $(STAMP)
	@$(PY) -m tests.oracle --fetch || echo "oracle package unavailable: parity tests will skip"
	@bash tests/setup_browser.sh || echo "no headless browser: browser tests will skip"

build-ext: $(STAMP)
	$(PY) -m tal_kit build-ext

clean:
	rm -rf runs .cache data/demo
