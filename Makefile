# make run: environment + install + the whole DAG on the embedded default config.
# make test: environment + install + the test suite (what .ci/run calls).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench upp install clean

run: install
	$(BIN)/tracerflow run

test: install
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/run.py

# umami-preprocessing in its own environment: the anchor of the Resample benchmark rows.
upp: benchmarks/.upp-venv/.installed

benchmarks/.upp-venv/.installed: benchmarks/upp_requirements.txt
	$(PYTHON) -m venv benchmarks/.upp-venv
	benchmarks/.upp-venv/bin/python -m pip install --quiet -r benchmarks/upp_requirements.txt
	touch $@

install: $(VENV)/.installed

# A CPU torch first: an unpinned torch would pull gigabytes of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf tracerflow-output benchmarks/work
