# Every target delegates to a Python entry point; the virtual environment is made on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PRESET ?= default
SOAK_PRESET ?= tiny
OUT    ?= build
JOBS   ?= auto

.PHONY: demo test verilog bench bench-gemm soak synth board formal lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,fpga]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m scripts.demo --preset $(PRESET)

test: $(VENV)/.installed
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

verilog: $(VENV)/.installed
	$(PY) -m scripts.generate --preset $(PRESET) -o $(OUT)

bench: $(VENV)/.installed
	$(PY) -m scripts.bench_hbm -o $(OUT)/bench

bench-gemm: $(VENV)/.installed
	$(PY) -m scripts.bench_gemm -o $(OUT)/bench

N ?= 200
SEED ?= 1
soak: $(VENV)/.installed
	$(PY) -m scripts.soak --preset $(SOAK_PRESET) -n $(N) --seed $(SEED) -o $(OUT)/soak

SYNTH_PRESET ?= ecp5
DEVICE ?= ecp5-85k
TOP ?= accelerator
synth: $(VENV)/.installed
	$(PY) -m scripts.synth --preset $(SYNTH_PRESET) --device $(DEVICE) --top $(TOP) -o $(OUT)/synth

board: $(VENV)/.installed
	$(PY) -m scripts.board -o $(OUT)/board

formal: $(VENV)/.installed
	$(PY) -m scripts.formal -o $(OUT)/formal

lint: $(VENV)/.installed
	$(PY) -m ruff check hw sim scripts tests

clean:
	rm -rf $(VENV) build sim_build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
