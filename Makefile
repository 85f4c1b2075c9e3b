# The two commands of the README. Both create the virtual environment .venv on first use (Python 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PIP = $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: demo test clean

# 1. The main job: install sqair-tf and run it on the embedded digits (see README).
demo: $(VENV)/.installed
	$(VENV)/bin/sqair-demo --rundir runs/demo

# 2. The whole test suite, with the test extras.
test: $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python setup.py
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python setup.py
	$(PIP) install -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) runs build *.egg-info
