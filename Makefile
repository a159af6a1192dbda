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
	$(BIN)/python -m pip install --quiet -e '.[test,batch,remote]'
	touch $@

clean:
	rm -rf tracerflow-output benchmarks/work

# LUMIN in its own environment: the anchor of the "Train MLP vs LUMIN" benchmark row. LUMIN 0.9.1
# pins numpy<2 and imports pdpbox without requiring it; pdpbox's own requirements (xgboost, sphinx,
# pytest, ...) are not needed by that import, so it goes in with --no-deps, plus pqdm, which that
# import does need.
LUMIN_PYTHON ?= python3.11
LUMIN_VENV := benchmarks/.lumin-venv

.PHONY: lumin

lumin: $(LUMIN_VENV)/.installed

$(LUMIN_VENV)/.installed:
	$(LUMIN_PYTHON) -m venv $(LUMIN_VENV)
	$(LUMIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LUMIN_VENV)/bin/python -m pip install --quiet torch==2.13.0 lumin==0.9.1 'numpy<2'
	$(LUMIN_VENV)/bin/python -m pip install --quiet --no-deps pdpbox==0.3.0
	$(LUMIN_VENV)/bin/python -m pip install --quiet pqdm==0.2.0 'numpy<2'
	$(LUMIN_VENV)/bin/python -c "from lumin.nn.models.model import Model"
	touch $@
