# rawws_nb: every target sets up what it needs itself (a .venv from pyproject.toml).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 8888

.PHONY: help venv lab demo serve test test-fast lint bench bench-codec bench-timeline bench-widgets conformance \
	browser-deps mqtt-deps kernel701 binder-check clean

help:
	@echo "make lab          JupyterLab on notebooks/01-quickstart.ipynb (embedded server, offline)"
	@echo "make demo         the Ktor raw-API scenarios in the terminal against the embedded server"
	@echo "make test         the whole test suite (installs everything it needs)"
	@echo "make bench        benchmarks against websockets, aiohttp, picows and a TCP floor"
	@echo "make bench-codec | bench-timeline | bench-widgets   the other benchmarks"
	@echo "make conformance  the Autobahn|Testsuite, all 301 non-compression cases"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[lab,test,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

lab: venv
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root) \
		notebooks/01-quickstart.ipynb

demo: venv
	$(VENV)/bin/rawws-nb demo

serve: venv
	$(VENV)/bin/rawws-nb serve --port 8765

# Debian's chromium for the real-browser tests (never a downloaded browser).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# Debian's mosquitto for the MQTT tests (the suite starts and stops it itself).
mqtt-deps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq mosquitto >/dev/null; fi; }

# The second kernel environment for the browser test: ipykernel 7.0.1 + ipywidgets 8.1.7
# (Binder's image) with the project, in .venv-kernel701 (idempotent; ~30 s the first time).
kernel701:
	bash .ci/kernel-7.0.1/setup.sh >/dev/null

test: lint browser-deps mqtt-deps kernel701
	$(PY) -m pytest

# Local stand-in for a Binder build: fresh Python 3.12 venv from binder/, pip check,
# every notebook, and the browser tests with its JupyterLab 4.4.9 + ipykernel 7.0.1.
binder-check: venv browser-deps
	bash .ci/binder/standin.sh

test-fast: venv
	$(PY) -m pytest -x -q -m "not browser"

# ruff, mypy --strict (config in pyproject.toml) and the import-linter layer contracts.
lint: venv
	$(VENV)/bin/ruff check rawws_nb protocols tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) -m benchmarks.run

bench-codec: venv
	$(PY) -m benchmarks.bench_codec

bench-timeline: venv
	$(PY) -m benchmarks.bench_timeline

# Ping round trips with the Dashboard displayed under /flood vs no panels (a real kernel).
bench-widgets: venv
	$(PY) -m rawws_nb.widgets._bench

# The Autobahn|Testsuite, all 301 non-compression cases; CASES="1.*,2.*" runs a subset.
conformance: venv
	bash .ci/autobahn/setup.sh
	$(PY) -m tests.conformance.run --no-setup --report test-artifacts/conformance-full.md $(if $(CASES),--cases "$(CASES)")

clean:
	rm -rf $(VENV) .venv-kernel701 .venv-binder .pytest_cache .hypothesis test-artifacts
