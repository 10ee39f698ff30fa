# modelops: the front door. `make help` lists the targets.
#
# Every target brings up what it needs, idempotently: the virtualenv and its pinned Python packages
# (.venv, from the hashed lock requirements/dev.txt), pinned binaries checked by sha256
# (.tools/bin), and Debian packages (installed when run as root; otherwise the exact apt-get
# command is printed).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools/bin
# Tools first on PATH for every recipe and every script it starts.
export PATH := $(CURDIR)/$(TOOLS):$(CURDIR)/$(BIN):$(PATH)
# No usage telemetry from DVC, GTO or CML (ITERATIVE_DO_NOT_TRACK) in any recipe, test or script
# make starts; the workflows set the same three at their top (tests/workflows).
export DVC_NO_ANALYTICS := 1
export GTO_NO_ANALYTICS := 1
export ITERATIVE_DO_NOT_TRACK := 1
# Nor from ONNX Runtime (a device id and event database in the home directory, uploads): the code that
# opens a session sets it as well (modelcard/runtime.py), and so does the image.
export ORT_DISABLE_TELEMETRY := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sort \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

# --- toolchain -------------------------------------------------------------------------------

# The dev lock (every package of the serving, training and dev extras and the build backend, each
# file checked by sha256), then the project itself, built by that locked setuptools.
$(VENV)/.installed: pyproject.toml requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create .venv from the hashed dev lock (requirements/dev.txt)

.PHONY: tools
tools: $(TOOLS)/helm ## install pinned helm, helm3 and kubectl (with its kustomize) into .tools/bin

$(TOOLS)/helm: scripts/install-helm-kubectl.sh
	scripts/install-helm-kubectl.sh $(TOOLS)

# The hashed locks in requirements/ (requirements/lock.py says which install reads which).
# pip-compile runs from its own venv, made from its own lock (requirements/tools.txt).
LOCK_VENV := .cache/lock
# --upgrade: every package to its newest version. `make lock LOCK_FLAGS=` re-resolves only what
# pyproject.toml or an .in file changed and keeps every other pin.
LOCK_FLAGS ?= --upgrade

$(LOCK_VENV)/.installed: requirements/tools.txt
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --require-hashes -r requirements/tools.txt
	touch $@

.PHONY: lock
lock: $(LOCK_VENV)/.installed ## regenerate requirements/*.txt from pyproject.toml, newest versions (review the diff)
	$(LOCK_VENV)/bin/python requirements/lock.py $(LOCK_FLAGS)

.PHONY: lock-check
lock-check: ## check the committed locks against pyproject.toml and each other (offline)
	$(PYTHON) requirements/lock.py --check

# --- the main job ----------------------------------------------------------------------------

# How `make demo` serves the model: `image` (the GitOps walk: build once, deploy dev, promote to
# staging and prod, roll prod back, each environment a podman pod), `processes` (the dev model on
# Nginx + uWSGI on loopback), or `auto`: the image when podman is installed or can be (as root,
# make installs it, as make test does).
DEMO_SERVE ?= auto
# MONITORING=on: the GitOps walk with monitoring on in every overlay (each environment's
# ServiceMonitor and PrometheusRule through every gate; mk/image.mk, demo-gitops).

.PHONY: demo
demo: ## train and register in a sandbox; build once, deploy dev, promote to staging and prod, roll prod back (podman pods; MONITORING=on)
	@started=$$(date +%s); \
	$(MAKE) demo-training || exit; \
	mode='$(DEMO_SERVE)'; \
	if [[ $$mode == auto ]]; then \
	  if command -v podman >/dev/null || [[ $$(id -u) == 0 ]]; then mode=image; \
	  else echo "demo: podman is not installed and only root can install it: no container image"; mode=processes; fi; \
	fi; \
	case $$mode in \
	  image) echo "demo: the GitOps walk with the container image (a podman pod per environment)"; \
	         $(MAKE) demo-gitops || exit ;; \
	  processes) echo "demo: serving the dev model with local Nginx + uWSGI processes (no podman: no promotion walk$(if $(filter on,$(MONITORING)),; MONITORING=on needs it))"; \
	         $(MAKE) demo-serving || exit ;; \
	  *) echo "error: DEMO_SERVE must be auto, image or processes, not '$$mode'" >&2; exit 2 ;; \
	esac; \
	echo "demo: $$(( $$(date +%s) - started )) s in all"

# --- quality ---------------------------------------------------------------------------------

.PHONY: lint
lint: venv ## ruff (lint + format check), mypy, shellcheck over every shell script, actionlint over the workflows
	ruff check .
	ruff format --check .
	mypy
	scripts/ensure-debian-packages.sh shellcheck
	python scripts/lint-shell.py
	actionlint -shellcheck shellcheck

.PHONY: format
format: venv ## apply ruff's fixes and formatting
	ruff check --fix .
	ruff format .

# TEST_PARALLEL: how make test spreads the suite: two pytest-xdist workers, one test group each
# at a time (tests/conftest.py puts the e2e tier in one group, every other module in its own).
# `make test TEST_PARALLEL=` runs it in one process.
TEST_PARALLEL ?= -n 2 --dist loadgroup

.PHONY: test
test: lint test-prereqs ## the whole test suite (CI runs this with CI=true)
	pytest $(TEST_PARALLEL)

# Each part adds what its tests need to test-prereqs in its own mk/*.mk file.
.PHONY: test-prereqs
test-prereqs: venv

.PHONY: clean
clean: ## remove build and run outputs (keeps .venv and .tools)
	rm -rf out .pytest_cache .mypy_cache .ruff_cache .hypothesis

# --- the parts of the pipeline, one file each --------------------------------------------------
include $(wildcard mk/*.mk)
