# printbridge: `make run` serves the API with a local Mosquitto; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
RUN_STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-mosquitto install-wrk run test lint format bench soak clean octoprint-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(RUN_STAMP)

install: $(STAMP)

install-mosquitto:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		echo "installing Mosquitto with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq mosquitto >/dev/null; \
	fi

run: $(RUN_STAMP) install-mosquitto
	@scripts/run.sh

lint: install
	$(BIN)/ruff check bridge tests bench agents/octoprint
	$(BIN)/ruff format --check bridge tests bench agents/octoprint
	$(BIN)/mypy
	cd agents/octoprint && ../../$(BIN)/mypy --config-file pyproject.toml octoprint_printbridge

format: install
	$(BIN)/ruff check --fix bridge tests bench agents/octoprint
	$(BIN)/ruff format bridge tests bench agents/octoprint

test: install install-mosquitto install-wrk octoprint-venv lint
	PATH="$$PATH:/usr/sbin" $(BIN)/pytest -q

soak: install install-mosquitto
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m tests.soak.soak_load
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m tests.soak.soak_broker_restart
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m tests.soak.soak_broker_restart --down 3

install-wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
		echo "installing wrk with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; \
	fi

bench: install install-mosquitto install-wrk
	@$(BIN)/python -c "import granian" 2>/dev/null || $(BIN)/pip install -q 'granian>=2,<3'  # server comparison only
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m bench.run_all

# -- OctoPrint and the OctoPrint plugin (agents/octoprint), for tests/octoprint -------------------------------
# A venv of its own: OctoPrint's dependencies never meet printbridge's. OctoPrint is installed once; the plugin
# is installed as users install it (not editable), again whenever one of its files changes. OctoPrint's
# netifaces builds from source: it needs a C compiler and Python's headers.
OCTOPRINT_VERSION := 1.11.8
OCTOPRINT_VENV := .venv-octoprint
OCTOPRINT_STAMP := $(OCTOPRINT_VENV)/.installed-$(OCTOPRINT_VERSION)
OCTOPRINT_PLUGIN_FILES := $(shell find agents/octoprint -name __pycache__ -prune -o -name '*.egg-info' -prune -o -name build -prune -o -type f -print)

$(OCTOPRINT_STAMP): $(OCTOPRINT_PLUGIN_FILES)
	@if ! command -v gcc >/dev/null 2>&1 || [ ! -e "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then \
		echo "installing gcc and Python headers with apt (OctoPrint builds netifaces)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gcc python3-dev >/dev/null; \
	fi
	@[ -x $(OCTOPRINT_VENV)/bin/python ] || { $(PYTHON) -m venv $(OCTOPRINT_VENV) && $(OCTOPRINT_VENV)/bin/pip install -q --upgrade pip; }
	$(OCTOPRINT_VENV)/bin/pip install -q octoprint==$(OCTOPRINT_VERSION) ./agents/octoprint
	$(OCTOPRINT_VENV)/bin/pip install -q --force-reinstall --no-deps ./agents/octoprint
	touch $@

octoprint-venv: $(OCTOPRINT_STAMP)

clean:
	rm -rf $(VENV) $(OCTOPRINT_VENV) .pytest_cache .mypy_cache .ruff_cache
