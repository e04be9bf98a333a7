# printbridge: `make run` serves the API with a local Mosquitto; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
RUN_STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-mosquitto install-moonraker install-wrk run test lint format bench soak clean

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

# Real Moonraker for the Klipper tests and benchmark, in its own venv (its pins are not ours), installed
# once per venv: the stamp names the version, so changing MOONRAKER_VERSION reinstalls.
MOONRAKER_VERSION := 0.11.0
MOONRAKER_VENV := .venv-moonraker
MOONRAKER_STAMP := $(MOONRAKER_VENV)/.installed-$(MOONRAKER_VERSION)

$(MOONRAKER_STAMP):
	rm -rf $(MOONRAKER_VENV)
	$(PYTHON) -m venv $(MOONRAKER_VENV)
	$(MOONRAKER_VENV)/bin/pip install -q 'moonraker==$(MOONRAKER_VERSION)'
	touch $@

install-moonraker: $(MOONRAKER_STAMP)

install-mosquitto:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		echo "installing Mosquitto with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq mosquitto >/dev/null; \
	fi

run: $(RUN_STAMP) install-mosquitto
	@scripts/run.sh

lint: install
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix bridge tests bench
	$(BIN)/ruff format bridge tests bench

test: install install-mosquitto install-moonraker install-wrk lint
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

bench: install install-mosquitto install-moonraker install-wrk
	@$(BIN)/python -c "import granian" 2>/dev/null || $(BIN)/pip install -q 'granian>=2,<3'  # server comparison only
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(MOONRAKER_VENV) .pytest_cache .mypy_cache .ruff_cache
