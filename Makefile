PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint format demo bench profile bench-quality gpu-check clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# One torch thread per test process: the tests use tiny networks, and on a busy 2-core machine
# two spinning OpenMP threads per process made them up to 10x slower.
test: export OMP_NUM_THREADS ?= 1
test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: install
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

demo: install
	$(BIN)/python -m lbt_lightning.programs.demo

bench: install
	$(BIN)/python benchmarks/speed.py

# Where an LBT / LBT-GAN iteration's time goes (torch.profiler), eager and compiled.
profile: install
	$(BIN)/python benchmarks/profile_iteration.py

# Time to quality (docs/results.md), two single-thread processes: the ring and the 100-grid (about
# 45 minutes), the 25-grid with PacGAN's networks (about 65), the ring on unseen seeds (about 10).
bench-quality: install
	$(BIN)/python benchmarks/time_to_quality.py
	$(BIN)/python benchmarks/time_to_quality.py --suite grid25
	$(BIN)/python benchmarks/time_to_quality.py --suite ring

# One prepared GPU check (<= 8 min on one GPU): device tests on cuda, ms/iteration and memory, 300k projection.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) lightning_logs runs demo_out
