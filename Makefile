# llm_monitor.fleet - one entry point for the demo, the tests and the benchmarks.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(CURDIR)/.cache/tools/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0
MOLECULE_SCENARIOS := $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

.PHONY: help venv engine tools images lint unit exporters-test molecule fleet-test browser-test test demo demo-status demo-down bench build clean

help:
	@echo "make demo        start a local container fleet, run site.yml on it, print Prometheus' URL and targets"
	@echo "make demo-down   remove the demo fleet"
	@echo "make test        everything CI runs: lint, unit, exporters, molecule ($(MOLECULE_SCENARIOS)), fleet tests"
	@echo "make bench       benchmarks (bench/), figures and ratios printed"
	@echo "make build       build the collection artifact into dist/"

# files/testkit: the simulated upstreams (test doubles) the exporters' tests and benchmarks run; never on production
# hosts, but in the development virtualenv.
$(VENV)/.installed: requirements/controller.txt requirements/test.txt $(wildcard files/exporters/pyproject.toml) \
		$(wildcard files/testkit/pyproject.toml)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip==25.3
	$(VENV)/bin/pip install -q -r requirements/test.txt
	if [ -f files/exporters/pyproject.toml ]; then $(VENV)/bin/pip install -q -e 'files/exporters[test]'; fi
	if [ -f files/testkit/pyproject.toml ]; then $(VENV)/bin/pip install -q -e 'files/testkit[test]'; fi
	touch $@

venv: $(VENV)/.installed

engine:
	bash tests/harness/docker-engine.sh

tools:
	bash tests/harness/tools.sh

images: engine
	bash tests/harness/build-images.sh bookworm trixie

lint: venv
	yamllint -s .
	ansible-lint --profile production
	ruff check plugins tests bench molecule roles/exporters/files files/dashboards
	ruff format --check plugins tests bench molecule roles/exporters/files files/dashboards
	mypy plugins files/dashboards roles/exporters/files/wheelhouse.py tests/harness tests/unit tests/fleet tests/browser tests/doubles/grafana bench/run.py bench/rules.py bench/role_lines.py bench/dashboards.py

unit: venv tools
	$(PY) -m pytest -q tests/unit

# The exporters and the testkit (test doubles), each linted, type-checked and tested the same way.
exporters-test: venv tools engine
	set -e; for d in files/exporters files/testkit; do \
	  if [ -f $$d/pyproject.toml ]; then \
	    (cd $$d && $(BIN)/ruff check && $(BIN)/ruff format --check && $(BIN)/mypy --strict src \
	      && $(BIN)/python -m pytest -q); fi; done

molecule: venv images
	set -e; for s in $(MOLECULE_SCENARIOS); do \
	  PYTHON=$(PY) bash tests/harness/with-mirror.sh molecule test -s $$s; done

fleet-test: venv images
	$(PY) -m pytest -q --durations=0 tests/fleet

# Every dashboard in a real Grafana (Playwright); skips, saying why, where no real Grafana runs (roles/grafana).
browser-test: venv
	$(PY) -m pytest -q -rs tests/browser

test: lint unit exporters-test molecule fleet-test browser-test

demo: venv
	$(PY) tests/harness/fleet.py up --name demo --publish 9090

demo-status: venv
	$(PY) tests/harness/fleet.py status --name demo

demo-down: venv
	$(PY) tests/harness/fleet.py down --name demo

bench: venv images
	$(PY) bench/run.py

build: venv
	mkdir -p dist && ansible-galaxy collection build --force --output-path dist .

clean:
	rm -rf dist .cache .pytest_cache
