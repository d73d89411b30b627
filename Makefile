# Two commands on a fresh machine: `make run` and `make test`.
# Both create .venv if missing and install the project into it (once per change
# of pyproject.toml), then run the main job or the tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORAGE ?= results

.PHONY: setup run test test-fast lint bench clean

setup: $(STAMP)

# torch first and on its own, with pip: pip takes the wheels this machine holds on
# disk (uv and poetry would download several GB instead).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet 'torch>=2.4' 'torchvision>=0.19'
	$(BIN)/python -m pip install --quiet -e '.[dev,corrupt]'
	# torchattacks cross-checks our APGD and Square in the tests only. --no-deps: it pins
	# requests~=2.25, which would downgrade what Ray's job client uses.
	$(BIN)/python -m pip install --quiet --no-deps 'torchattacks>=3.5'
	touch $(STAMP)

# The main job, on the embedded digits data set: the demo sweep (Ray Tune + Optuna over
# SGT's and ASGT's masking ratio, KL weight and attack eps; 4 trials), which prints its
# leaderboard and the TensorBoard command. Re-running finishes the same sweep (--finish:
# a complete one is not run again, nothing is appended twice).
run: setup
	$(BIN)/limelight sweep search_spaces/demo.yaml --storage $(STORAGE) --finish
	$(BIN)/limelight leaderboard --storage $(STORAGE) --group-by method,dataset --sort robust_acc_mean

# The whole suite (CI runs this; ~15 minutes on 2 cores).
test: setup
	$(BIN)/python -m pytest -q

# The edit loop: every test that starts no Ray (tests/conftest.py marks the others from
# the fixtures they use).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not ray"

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/attacks.py
	$(BIN)/python benchmarks/lime.py
	$(BIN)/python benchmarks/methods.py
	$(BIN)/python benchmarks/sweep.py

clean:
	rm -rf results .pytest_cache
