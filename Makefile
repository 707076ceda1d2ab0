# The front door: CI, the README and humans all use these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed
TOOLS := $(VENV)/tools
PROMTOOL := $(TOOLS)/promtool
PYTEST_ARGS ?=
BENCH_ARGS ?=
FAULTS_ARGS ?= --full
IMAGE_TEST_ARGS ?=
SOURCES := worker deploy/local/feedback_local tests

.PHONY: help install promtool run test test-fast lint format type stack bench faults image-test clean lock

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml deploy/local/pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(LOCK) -e '.[dev,otel]' -e ./deploy/local
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with the worker (and its [otel] extra), the local stack and the dev tools

promtool: $(PROMTOOL) ## promtool for the alert-rule tests, taken from Debian's prometheus package

# Only the promtool binary is taken from the package (nothing is installed or started); where
# the package cannot be had, the rule tests skip and say why.
$(PROMTOOL):
	@mkdir -p $(TOOLS)/deb
	@cd $(TOOLS)/deb && { apt-get download prometheus >/dev/null 2>&1 \
	    || { apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; } \
	  && dpkg-deb -x prometheus_*.deb root && install -m 0755 root/usr/bin/promtool ../promtool \
	  || echo "promtool not installed (apt-get download prometheus failed): the rule tests skip"
	@rm -rf $(TOOLS)/deb

lock: ## Re-pin requirements/lock.txt from what .venv holds
	$(BIN)/python -m pip freeze --exclude-editable | grep -vi '^cognito-feedback-' > $(LOCK)

run: install ## Start the local stack, drain a demo workload through the worker, print a summary
	$(BIN)/feedback-local demo

test: install promtool ## Lint, type-check and run the whole test suite against the local stack
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install promtool ## Only the tests (no lint or type check)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install ## ruff lint and format check
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix $(SOURCES)
	$(BIN)/ruff format $(SOURCES)

type: install ## mypy --strict over worker/ and tests/
	$(BIN)/mypy

bench: install ## Rate control, bulkheads, drain rate and CPU against the quota beside two peers (~25 min; BENCH_QUICK=1 ~5 min)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

faults: install ## The fault suite on the real worker (full form + 30-min soak, ~45 min)
	$(BIN)/python -m tests.faults $(FAULTS_ARGS)

image-test: install ## Build deploy/Dockerfile with podman, run it and the k8s Deployment on the local stack (root, ~2 min)
	$(BIN)/python -m tests.image $(IMAGE_TEST_ARGS)

stack: install ## Run the local stack in the foreground and print the environment to export
	$(BIN)/feedback-local stack

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build *.egg-info
