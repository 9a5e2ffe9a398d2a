# Quick start:  make run   (set up; on first start fill ./facetrail-data with a sample gallery and users; serve the web app)
#               make test  (set up, install Debian's Chromium for the browser tests, run the test suite)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA ?= facetrail-data
SHARED_FACES ?= ../shared/faces
PORT ?= 8000
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup browser run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the Playwright browser tests (Playwright's own browser download needs the open internet)
$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

browser: $(CHROMIUM)

run: setup
	$(BIN)/python scripts/sample_gallery.py --data $(DATA) --shared-faces $(SHARED_FACES) --port $(PORT)

# The suite runs on every core (pytest-xdist, one worker process per core: TEST_WORKERS=0 runs it in this process).
# Each test has its own data directory and PostgreSQL database; a module whose tests share an expensive fixture is
# marked xdist_group and runs in one worker (--dist loadgroup), the other tests go to whichever worker is free.
TEST_WORKERS ?= auto

test: setup browser
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

bench: setup
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_enrol.py --images $(SHARED_FACES)/lfw-dev
	$(BIN)/python benchmarks/bench_accuracy.py --shared-faces $(SHARED_FACES)

clean:
	rm -rf $(VENV) .cache .pytest_cache .hypothesis
