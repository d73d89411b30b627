# Two commands on a fresh machine: `make run` and `make test`.
# Both create .venv if missing and install the project into it (once per change
# of pyproject.toml), then run the main job or the tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORAGE ?= results

.PHONY: setup run test lint bench clean

setup: $(STAMP)

# torch first and on its own, with pip: pip takes the wheels this machine holds on
# disk (uv and poetry would download several GB instead).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet 'torch>=2.4' 'torchvision>=0.19'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job, on the embedded digits data set: ERM and PGD adversarial training,
# then both checkpoints attacked side by side. Re-running resumes / re-evaluates.
run: setup
	$(BIN)/limelight train --method erm --dataset digits --storage $(STORAGE) --out demo/erm
	$(BIN)/limelight train --method adversarial --dataset digits --storage $(STORAGE) --out demo/adversarial
	$(BIN)/limelight evaluate --checkpoint $(STORAGE)/demo/erm/checkpoint.pt $(STORAGE)/demo/adversarial/checkpoint.pt

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/attacks.py
	$(BIN)/python benchmarks/lime.py
	$(BIN)/python benchmarks/methods.py

clean:
	rm -rf results .pytest_cache
