PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the project metadata changed since the last install.
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pixelwise demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/metrics.py
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/classical.py --quality
	$(BIN)/python benchmarks/checkerboard.py
	$(BIN)/python benchmarks/gridding.py
	$(BIN)/python benchmarks/vs_torchvision.py
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/crf.py
	$(BIN)/python benchmarks/crf_rnn.py --scratch

clean:
	rm -rf runs .pytest_cache
