# Every target is self-sufficient on a fresh machine: it creates .venv and installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TIER   ?= smoke
JOBS   ?= 2
# Real sample data for offline runs (tests and CI seed the data cache from here when it exists).
SHARED_DATA ?= ../shared/data

.PHONY: help install system-deps test book smoke full bench grade-check clean

help:
	@echo "make book   build the book (executes every notebook, TIER=$(TIER)) into _build/html"
	@echo "make test   install everything, then run the whole test suite"
	@echo "make smoke  execute every notebook in the smoke tier (report in _build/reports)"
	@echo "make full   execute every notebook in the full tier (GPU runner, network)"
	@echo "make bench  benchmarks (training on real data; minutes)"

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[course,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (medlearn)" >/dev/null
	touch $@

install: $(VENV)/.installed

# Orthanc (the PACS of part 2) comes from Debian's packages. Needs root or sudo.
system-deps:
	@if ! command -v Orthanc >/dev/null 2>&1 || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  echo "installing Orthanc with apt-get ..."; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null; \
	fi
	@Orthanc --version | head -n 1

test: install system-deps
	MEDLEARN_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest

book: install
	@if [ -d "$(SHARED_DATA)" ]; then $(BIN)/medlearn seed-cache $(SHARED_DATA); fi
	$(BIN)/medlearn build-book --tier $(TIER) --jobs $(JOBS)

smoke: install
	@if [ -d "$(SHARED_DATA)" ]; then $(BIN)/medlearn seed-cache $(SHARED_DATA); fi
	$(BIN)/medlearn run-notebooks book exercises/source --tier smoke --jobs $(JOBS) --report _build/reports/smoke.json

full: install
	$(BIN)/medlearn run-notebooks book --tier full --jobs 1 --report _build/reports/full.json

bench: install
	@if [ -d "$(SHARED_DATA)" ]; then $(BIN)/medlearn seed-cache $(SHARED_DATA); fi
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

grade-check: install
	$(BIN)/medlearn grade-check

clean:
	rm -rf _build exercises/release exercises/submitted exercises/autograded exercises/feedback exercises/gradebook.db
