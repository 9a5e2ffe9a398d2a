# Quick start:  make run   (set up, initialise ./facetrail-data, enrol a sample gallery, print an evaluation)
#               make test  (set up, run the test suite)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA ?= facetrail-data
SHARED_FACES ?= ../shared/faces

.PHONY: setup run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python scripts/sample_gallery.py --data $(DATA) --shared-faces $(SHARED_FACES)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_enrol.py --images $(SHARED_FACES)/lfw-dev
	$(BIN)/python benchmarks/bench_accuracy.py --shared-faces $(SHARED_FACES)

clean:
	rm -rf $(VENV) .cache .pytest_cache .hypothesis
