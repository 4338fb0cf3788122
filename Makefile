# Set-up is done by the targets themselves: each creates .venv and installs what it needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-0.1.0

.PHONY: demo test bench lint clean install

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[synth,test,lint]'
	@touch $(STAMP)

# Browser tests drive Debian's chromium (Playwright never downloads a browser here).
$(VENV)/.chromium: | $(STAMP)
	@command -v chromium >/dev/null 2>&1 && fc-list :lang=ja | grep -q . || { echo "installing Debian's chromium and a Japanese font for the browser tests"; \
	  apt-get install -y --no-install-recommends chromium fonts-ipafont-gothic >/dev/null 2>&1 || \
	  { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium fonts-ipafont-gothic >/dev/null 2>&1; } || \
	  echo "warning: chromium could not be installed; browser tests will fail under CI"; }
	@command -v chromium >/dev/null 2>&1 && touch $@ || true

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/renkei demo

test: $(STAMP) $(VENV)/.chromium
	$(PY) -m pytest

bench: $(STAMP)
	cd bench && ../$(PY) run.py
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check renkei tests bench
	$(VENV)/bin/mypy renkei

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
