# rawws_nb: every target sets up what it needs itself (a .venv from pyproject.toml).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 8888

.PHONY: help venv speedups lab demo serve test test-fast lint node-deps bench bench-codec bench-timeline bench-widgets conformance \
	system-deps browser-deps proxy-deps mqtt-deps capture-deps kernel701 binder-check clean

help:
	@echo "make lab          JupyterLab on notebooks/01-quickstart.ipynb (embedded server, offline)"
	@echo "make demo         the Ktor raw-API scenarios in the terminal against the embedded server"
	@echo "make test         the whole test suite (installs everything it needs)"
	@echo "make bench        benchmarks against websockets, aiohttp, picows and a TCP floor"
	@echo "make bench-codec | bench-timeline | bench-widgets   the other benchmarks"
	@echo "make conformance  the Autobahn|Testsuite, all 517 cases (sections 1-10, 12, 13: compression too)"

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

# The Debian packages the tests use as real peers (chromium for the browser tests,
# tinyproxy and Dante for proxies, mosquitto for MQTT, tshark and tcpdump for captures),
# installed in one apt-get run, only those missing (never a downloaded browser).
DEB_NEEDS := chromium:chromium tinyproxy:tinyproxy danted:dante-server mosquitto:mosquitto \
	tshark:tshark tcpdump:tcpdump
# $(call deb_install,command:package ...): the packages whose command is missing.
deb_install = missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair\#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || test -x /usr/sbin/$$cmd || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
system-deps:
	@$(call deb_install,$(DEB_NEEDS))

browser-deps proxy-deps mqtt-deps capture-deps: system-deps

# The second kernel environment for the browser test: ipykernel 7.0.1 + ipywidgets 8.1.7
# (Binder's image) with the project, in .venv-kernel701 (idempotent; ~30 s the first time).
kernel701:
	bash .ci/kernel-7.0.1/setup.sh >/dev/null

# Node's ws, an independent peer for the compression interop tests (npm registry, into a
# git-ignored folder; Node.js itself is on the machine).
node-deps:
	@test -d .ci/node-peers/node_modules/ws || npm ci --prefix .ci/node-peers --silent --no-audit --no-fund

test: lint system-deps kernel701 node-deps speedups
	$(PY) -m pytest
	@echo "again without the compiled fast path (RAWWS_NB_PURE=1): the reader, the core, the session and the recorder"
	RAWWS_NB_PURE=1 $(PY) -m pytest -q tests/test_wire.py tests/test_connection.py \
		tests/test_session.py tests/test_speedups.py tests/test_hostile_peers.py tests/test_session_large_frames.py \
		tests/timeline

# The optional compiled fast path (rawws_nb/_speedups.c), built in place when its source
# is newer; without a C compiler rawws_nb runs its pure-Python reader.
speedups: venv
	$(PY) .ci/hatch_build.py
	@# The second kernel's Python (3.12) has its own build of it, in the same folder.
	@if [ -x .venv-kernel701/bin/python ]; then .venv-kernel701/bin/python .ci/hatch_build.py; fi

# Local stand-in for a Binder build: fresh Python 3.12 venv from binder/, pip check,
# every notebook, and the browser tests with its JupyterLab 4.4.9 + ipykernel 7.0.1.
binder-check: venv browser-deps
	bash .ci/binder/standin.sh

test-fast: venv speedups
	$(PY) -m pytest -x -q -m "not browser"

# ruff, mypy --strict (config in pyproject.toml) and the import-linter layer contracts.
lint: venv
	$(VENV)/bin/ruff check rawws_nb protocols tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: venv speedups
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.compressed
	$(PY) -m benchmarks.bench_pcap
	$(PY) -m benchmarks.bench_relay

# Instructions per seq round trip, counted by callgrind (the same count on a busy host).
bench-instructions: venv speedups
	@$(call deb_install,valgrind:valgrind)
	$(PY) -m benchmarks.instructions

bench-codec: venv
	$(PY) -m benchmarks.bench_codec

bench-timeline: venv
	$(PY) -m benchmarks.bench_timeline

# Ping round trips with the Dashboard displayed under /flood vs no panels (a real kernel).
bench-widgets: venv
	$(PY) -m rawws_nb.widgets._bench

# The Autobahn|Testsuite, all 517 cases (sections 12 and 13 take minutes); CASES="1.*,2.*" runs a subset.
conformance: venv
	bash .ci/autobahn/setup.sh
	$(PY) -m tests.conformance.run --no-setup --report test-artifacts/conformance-full.md $(if $(CASES),--cases "$(CASES)")

clean:
	rm -rf $(VENV) .venv-kernel701 .venv-binder .pytest_cache .hypothesis test-artifacts
