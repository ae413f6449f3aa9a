# Quick start: `make demo` (synthesize -> train -> predict -> evaluate -> report on the phantom)
# and `make test`. Each creates/refreshes .venv: torch first (a CPU build; see README for GPU),
# then coroseg with its dev extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo_out

.PHONY: venv test test-fast lint demo demo-quick results clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: venv lint
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks train.py test.py

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

demo: venv
	$(VENV)/bin/coroseg demo --out $(DEMO_OUT)

demo-quick: venv
	$(VENV)/bin/coroseg demo --quick --out $(DEMO_OUT)-quick

# every CPU-measured number the README and docs quote, raw outputs in docs/results/ (hours; see
# docs/benchmarks.md "Reproducing every number"): make results RESULTS_ARGS="--only tta" for some
results: venv
	$(PY) benchmarks/reproduce.py $(RESULTS_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(DEMO_OUT)-quick .pytest_cache
