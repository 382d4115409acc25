# Every target sets up what it needs: a local virtualenv (.venv) with the pinned versions from
# requirements/dev.lock and this project installed in editable mode. The virtualenvs are built by uv
# (pinned in requirements/tools.lock, installed by pip into .venv-tools first), which installs a lock
# file in seconds; like pip it compiles no bytecode: Python compiles the modules a run imports, a
# fraction of Airflow's, on first use, and caches them (see PYTHONDONTWRITEBYTECODE below). uv reads
# UV_INDEX_URL (not pip's configuration) for a mirror.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS_VENV := .venv-tools
UV := $(TOOLS_VENV)/bin/uv
UV_INSTALL := $(UV) pip install --quiet
# Python caches the bytecode of what it imports (each module compiled once, then read back): a
# machine whose environment sets PYTHONDONTWRITEBYTECODE (this one's does) otherwise compiles
# Airflow again in every process, 2.4x the CPU to import it (bench/bench_bytecode_cache.py), and a
# run starts about a hundred such processes (services, workers, CLIs, task runners).
unexport PYTHONDONTWRITEBYTECODE
# uv trusts the machine's certificate store (as pip does through its `cert` setting), so that a
# TLS-inspecting proxy whose authority the machine trusts is trusted too; the package check's
# clean environment keeps the setting.
export UV_SYSTEM_CERTS := 1

.PHONY: help venv floor-venv browser-deps lint test package-floor realcore-lint coverage test-main test-unit test-realcore test-floor test-floor-all test-package demo demo-ui bench protos lock clean

help:
	@echo "make demo      run the example DAGs against the Core emulator in a real Airflow"
	@echo "make demo-ui   same, then leave Airflow and the emulator running"
	@echo "make test      the whole test suite (main, Airflow floor, real Core stages, lint, package check)"
	@echo "make lint      ruff check, ruff format --check and mypy on the package"
	@echo "make test-realcore  the real-Core stage alone (skips without ../shared/real-core)"
	@echo "make coverage  the main, floor and real-Core stages with line and branch coverage of the package"
	@echo "make test-package   build the sdist and wheel, check them, install the wheel in a clean virtualenv"
	@echo "make bench     the benchmarks (writes bench/RESULTS.md)"
	@echo "make protos    regenerate cerebelum_provider/proto from protos/"

$(UV): requirements/tools.lock
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/tools.lock
	touch $@

$(STAMP): requirements/dev.lock pyproject.toml $(UV)
	$(UV) venv --quiet --clear --seed --python $(PYTHON) $(VENV)
	$(UV_INSTALL) --python $(PY) -r requirements/dev.lock
	$(UV_INSTALL) --python $(PY) --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

# The same project against the lowest Airflow pyproject.toml claims (requirements/floor.lock).
FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed

$(FLOOR_STAMP): requirements/floor.lock pyproject.toml $(UV)
	$(UV) venv --quiet --clear --seed --python $(PYTHON) $(FLOOR_VENV)
	$(UV_INSTALL) --python $(FLOOR_VENV)/bin/python -r requirements/floor.lock
	$(UV_INSTALL) --python $(FLOOR_VENV)/bin/python --no-deps --no-build-isolation -e .
	touch $@

floor-venv: $(FLOOR_STAMP)

# The browser test drives Debian's chromium through chromedriver; install them when missing
# (CI runs as root with Debian's package registry reachable).
browser-deps:
	@if command -v chromium >/dev/null && test -x /usr/bin/chromedriver; then :; else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; fi

# The package's rules, checked: ruff (its default rules and the 110-column limit), the formatter, and
# mypy (pyproject.toml's [tool.mypy]); make test runs it after the real-Core stage, in that chain.
lint: $(STAMP)
	$(VENV)/bin/ruff check cerebelum_provider
	$(VENV)/bin/ruff format --check cerebelum_provider
	$(VENV)/bin/mypy

# The virtualenvs are built first (seconds, with uv). Then three chains of stages run side by side:
# the main stage (MAIN_WORKERS pytest-xdist workers; tests/e2e's shared Airflow stack on one of them,
# its PostgreSQL stack on another), the longest; the package check, then the floor stage (two
# workers); and the real-Core stage (three parts side by side, each with its own Cores), then lint.
# The run is bound by the machine's CPU: sampled each second, both cores are busy from the first
# stage to the last few minutes, so a stage is shortened by cutting CPU (Airflow processes, imports)
# or the main stage's tail, not by more workers (a fourth main worker made the run slower). Each
# worker has its own Airflow home and emulators; make prints each chain's output in one piece when
# it ends.
MAIN_WORKERS := 3
XDIST := --dist loadgroup

test:
	@$(MAKE) --no-print-directory -j3 --output-sync=target venv floor-venv browser-deps
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-main package-floor realcore-lint

# The main stage is the longest chain, and the machine's two cores are busy from start to end: the
# side chains' batch work (the package check, the floor and lint, whose waits already allow for a
# loaded machine) runs at a lower priority (nice), so that it fills the cores the main stage leaves
# idle instead of taking a share of them from it. The real-Core stage keeps the normal priority: its
# Cores and its Airflow stack must start within deadlines.
package-floor:
	@nice -n 5 $(MAKE) --no-print-directory test-package
	@nice -n 5 $(MAKE) --no-print-directory test-floor

realcore-lint:
	@$(MAKE) --no-print-directory test-realcore
	@nice -n 10 $(MAKE) --no-print-directory lint

# Line and branch coverage of cerebelum_provider/ (coverage.py through pytest-cov) over the main,
# floor and real-Core stages combined, as make test runs them; code run by the Airflow and Core
# processes the tests start is not counted. COV is empty for make test: tracing costs time.
COV :=
COVERAGE_ARGS := --cov=cerebelum_provider --cov-branch --cov-report=
# Each stage's data file (its COVERAGE_FILE below); the real-Core stage writes none when skipped.
COVERAGE_DATA := .coverage.main .coverage.floor .coverage.realcore .coverage.realcore-e2e .coverage.realcore-core .coverage.realcore-rest

coverage: $(STAMP) $(FLOOR_STAMP) browser-deps
	rm -f .coverage $(COVERAGE_DATA)
	-@$(MAKE) --no-print-directory -j2 --output-sync=target test-main test-floor COV="$(COVERAGE_ARGS)"
	-@$(MAKE) --no-print-directory test-realcore COV="$(COVERAGE_ARGS)"
	$(VENV)/bin/coverage combine --keep $$(ls $(COVERAGE_DATA) 2>/dev/null)
	$(PY) scripts/coverage_figures.py

# The package check runs Airflow's CLI on the installed wheel (providers list, hooks) on this Airflow, so
# the main stage leaves that test to the floor stage, where the package check does not run.
MAIN_DESELECT := --deselect tests/provider/test_provider_info.py::test_airflow_cli_lists_the_provider_and_its_hook

# Everything but the real-Core stage, on the newest Airflow this project pins.
test-main: $(STAMP)
	COVERAGE_FILE=.coverage.main $(PY) -m pytest -p no:cacheprovider -q -n $(MAIN_WORKERS) $(XDIST) --ignore=tests/realcore $(MAIN_DESELECT) --durations=15 $(COV)

# Everything against the real Cerebelum Core release (../shared/real-core, or the directory in
# CEREBELUM_REAL_CORE): the conformance table, the client, the provider's classes in dag.test() and a
# four-process Airflow stack; a Core, its PostgreSQL, a token service and an SDK worker for each heavy
# test module and one shared by the light ones (tests/realcore/conftest.py says why), in three parts
# side by side, each in a network of its own when run as root (scripts/realcore_stage.py). Without
# the release the stage is skipped with one line that says why and how to point it at a release.
test-realcore: $(STAMP)
	@if missing=$$($(PY) scripts/real_core.py --check 2>&1); then \
		$(PY) scripts/realcore_stage.py $(COV); \
	else echo "real-Core stage skipped: $$missing"; fi

test-unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -q -m "not e2e and not browser"

# The provider's unit suite (every Airflow API the provider uses: connection form, hook,
# trigger, sensor, operators, example DAGs) and its import cost at parse time on the Airflow floor.
# The client, the emulator and the bulk-resume engine (tests/provider/test_bulk.py, left out here)
# import no Airflow; tests/reliability and tests/perf also pass on the floor (make test-floor-all). The
# Airflow code under test is the same whichever of Core's APIs the client speaks, so the floor
# runs each test over the HTTP API only, also those the main stage runs over both (tests of what
# only gRPC has still run, over gRPC). The shared poller's tests (test_shared_poll.py) are left out
# too: they count the calls of the poller's own logic; the triggers around it are tested here
# (test_trigger.py), and Airflow only lends the poller its connection (test_hook.py). They were a
# tenth of the floor's time (31 of 316 test seconds); make test-floor-all still runs them.
test-floor: $(FLOOR_STAMP)
	CEREBELUM_TEST_APIS=http COVERAGE_FILE=.coverage.floor $(FLOOR_VENV)/bin/python -m pytest -p no:cacheprovider \
		-q -n 2 $(XDIST) -m "not e2e and not browser and not airflow_3_3" --durations=15 tests/provider \
		--ignore=tests/provider/test_bulk.py --ignore=tests/provider/test_shared_poll.py \
		tests/test_import_cost.py $(COV)

test-floor-all: $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/python -m pytest -p no:cacheprovider -q -m "not e2e and not browser" \
		tests/provider tests/reliability tests/perf tests/test_import_cost.py

# The package as users get it: build the sdist and wheel, check their metadata as PyPI does, install
# the wheel with Airflow into a clean virtualenv (uv, versions from requirements/dev.lock, its cache
# reused) and see Airflow's CLI list the provider, its connection type and the example DAGs.
test-package: $(STAMP)
	$(PY) scripts/check_package.py --uv $(UV)

demo: $(STAMP)
	$(PY) scripts/demo.py

demo-ui: $(STAMP)
	$(PY) scripts/demo.py --keep-running

bench: $(STAMP)
	$(PY) bench/run_all.py

protos: $(STAMP)
	$(PY) scripts/generate_protos.py

# Re-pin requirements/dev.lock from a scratch virtualenv resolved from pyproject.toml.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/dev.in
	(sed -n '1,2p' requirements/dev.lock; .venv-lock/bin/pip freeze) > requirements/dev.lock.new
	mv requirements/dev.lock.new requirements/dev.lock && rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .airflow .demo test-artifacts
