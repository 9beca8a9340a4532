# The two commands of the quick start: `make demo` and `make test`.
# Each sets everything up on a fresh machine (system packages, .venv, the package), then runs its job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup system venv demo test test-fast clean

setup: system venv

system:
	@bash tools/install_system_packages.sh

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "== installing latentspeech and its pinned dependencies into $(VENV) (a few minutes on a fresh machine)"
	$(PIP) install -qq --upgrade "pip>=23"
	$(PIP) install -qq -c constraints.txt -e '.[eval,test,serve]'
	@touch $(STAMP)

venv: $(STAMP)

demo: setup
	@$(VENV)/bin/latentspeech demo --out demo.wav

test: setup
	@$(PY) -m pytest tests -q

test-fast: setup
	@$(PY) -m pytest tests -q -m "not slow"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache demo.wav
