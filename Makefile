# Every target is self-sufficient on a fresh machine: it creates .venv and installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TIER   ?= smoke
JOBS   ?= 2
# Real sample data for offline runs (tests and CI seed the data cache from here when it exists).
SHARED_DATA ?= ../shared/data

.PHONY: help install system-deps system-deps-optional site-deps samples test book smoke full bench \
	grade-check check-site clean

help:
	@echo "make book   build the book (executes every notebook, TIER=$(TIER)) into _build/html"
	@echo "            (after make full: make book TIER=full EXECUTED=_build/full/executed)"
	@echo "make test   install everything, then run the whole test suite"
	@echo "make smoke  execute every notebook in the smoke tier (report in _build/reports)"
	@echo "make full   every book and assignment notebook in the full tier on one GPU (.ci/full)"
	@echo "make check-site  open every page of _build/html in headless Chromium; screenshots"
	@echo "make samples     download the real sample data (md5-checked) into SHARED_DATA"
	@echo "make bench  benchmarks (training on real data; minutes)"

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[course,dev]"
	@# pip byte-compiles the ~25,000 installed files one at a time (about 100 s on 2 cores); compileall
	@# uses every core, and skips the packages' own test folders (a fifth of the files; nothing imports
	@# them). A few files of the dependencies (templates) do not compile: pip ignores them too.
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/' $(VENV)/lib >/dev/null || true
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (medlearn)" >/dev/null
	touch $@

install: $(VENV)/.installed

# Orthanc (the PACS of part 2; its Python plugin runs part 6's one click) comes from Debian's
# packages. Needs root or sudo.
system-deps:
	@if ! { command -v Orthanc || [ -x /usr/sbin/Orthanc ]; } >/dev/null 2>&1 \
	    || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
	    || [ ! -e /usr/share/orthanc/plugins/libOrthancPython.so ] \
	    || ! command -v bwrap >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  echo "installing Orthanc (and bubblewrap, the autograding sandbox) with apt-get ..."; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq orthanc orthanc-dicomweb orthanc-python bubblewrap >/dev/null; \
	fi
	@$$(command -v Orthanc || echo /usr/sbin/Orthanc) --version | head -n 1  # (/usr/sbin: not on a user's PATH)

# `make book` installs the same where apt-get and root (or sudo) are at hand; elsewhere (macOS, no
# root) it says so and the book shows the PACS chapters unexecuted with a note. `make test` and CI
# require Orthanc (MEDLEARN_REQUIRE_PACS=1; CI=true): there a missing PACS is a failure.
system-deps-optional:
	@if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null || [ -t 0 ]; }; then \
	  $(MAKE) --no-print-directory system-deps || echo "note: the system packages could not be installed (see above)."; \
	else \
	  echo "note: no apt-get, or no root/sudo: Orthanc (the PACS of part 2) is not installed here;"; \
	  echo "      the book shows its chapters without outputs. See https://www.orthanc-server.com/download.php"; \
	fi

# pytest-xdist: WORKERS processes share the tests, a group at a time (tests/conftest.py: the notebooks,
# each assignment's round trip and each module stay on one worker); much of the suite waits on kernels,
# servers and time limits, so 4 workers keep 2 cores busy. One BLAS/OpenMP thread per process: with
# several kernels training at once, torch's default (a thread per core each) makes the threads spin
# against each other and the whole run slower.
WORKERS ?= 4
test: install system-deps site-deps
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	MEDLEARN_REQUIRE_PACS=1 MEDLEARN_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest \
	  -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

# The real sample data the tests read, downloaded from their sources with md5 (what CI caches).
samples: install
	$(BIN)/medlearn fetch-samples $(SHARED_DATA)

book: install system-deps-optional
	@if [ -d "$(SHARED_DATA)" ]; then $(BIN)/medlearn seed-cache $(SHARED_DATA); fi
	$(BIN)/medlearn build-book --tier $(TIER) --jobs $(JOBS) $(if $(EXECUTED),--executed $(EXECUTED))

smoke: install
	@if [ -d "$(SHARED_DATA)" ]; then $(BIN)/medlearn seed-cache $(SHARED_DATA); fi
	$(BIN)/medlearn run-notebooks book exercises/source --tier smoke --jobs $(JOBS) --report _build/reports/smoke.json

# The full tier in one command on one GPU machine: every book and assignment notebook, several at
# a time; executed notebooks and the time report in _build/full (FULL_JOBS=N to change).
full: install
	SHARED_DATA=$(SHARED_DATA) bash .ci/full

# Headless Chromium (Debian's package) for `make check-site` and its test.
site-deps:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
	    && ! command -v google-chrome >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  echo "installing chromium with apt-get ..."; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# Every page of the built book in a real browser: load, console errors, images, Colab button, links.
check-site: install site-deps
	$(BIN)/medlearn check-site _build/html --screenshots _build/site-check

# Each benchmark once; the MedMNIST recipes with three seeds (their spread is part of the result).
bench: install
	@if [ -d "$(SHARED_DATA)" ]; then $(BIN)/medlearn seed-cache $(SHARED_DATA); fi
	@for b in benchmarks/*.py; do echo "== $$b"; \
	  case $$b in *mnist*) args="--seeds 3";; *) args="";; esac; \
	  $(BIN)/python $$b $$args || exit 1; done

grade-check: install
	$(BIN)/medlearn grade-check

clean:
	rm -rf _build exercises/release exercises/submitted exercises/autograded exercises/feedback exercises/gradebook.db
