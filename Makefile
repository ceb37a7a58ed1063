# Two commands on a fresh machine: `make run` (the daemon on its demo defaults) and `make test`.
# Each creates the virtualenv and installs the exact versions in constraints.txt first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= .cltool-demo
STAMP  := $(VENV)/.installed
# make test runs the suite in this many worker processes (pytest-xdist, a whole test file per worker)
TEST_WORKERS ?= 2

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: run test test-fast install lint-imports security clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,postgres]'
	touch $@

install: $(STAMP)

## run: the daemon on embedded defaults, fed the bundled demo stream one file at a time (Ctrl-C stops).
run: $(STAMP)
	@test -f $(DEMO)/cltool.toml || $(BIN)/cltool init --dir $(DEMO)
	$(BIN)/cltool --config $(DEMO)/cltool.toml run --demo-feed data/demo

## test: import contracts, security scans, then the whole suite (fast unit tests and MiniLM/MLflow integration tests).
test: $(STAMP) lint-imports security
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not integration"

lint-imports: $(STAMP)
	$(BIN)/lint-imports

## security: bandit over the packages (fails on a finding), pip-audit over the pins (reports; skipped offline).
security: $(STAMP)
	BIN=$(BIN) .ci/security

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
