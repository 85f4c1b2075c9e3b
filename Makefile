# The two commands of the README. Both create the virtual environment .venv on first use (Python 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PIP = $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: demo test pretrained clean

# 1. The main job: install sqair-tf and run it on the embedded digits (see README).
demo: $(VENV)/.installed
	$(VENV)/bin/sqair-demo --workdir runs/demo

# 2. The whole test suite, with the test extras.
test: $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest

# 3. Reproduce the shipped pretrained model (trainers/pretrained_models/mnist; BUILD.md "Pretrained models"): the
#    paper's data, the `tracking` preset for 25,000 steps (about 2 hours on 2 cores; interrupt and re-run to resume),
#    then package the last checkpoint with its held-out figures. SEED=1 etc. for the other seeds of the benchmark.
SEED ?= 0
pretrained: $(VENV)/.installed
	test -f runs/mnist_data/train.json || $(VENV)/bin/sqair-data generate --out runs/mnist_data --split train --num 60000 --seed 0
	test -f runs/mnist_data/test.json || $(VENV)/bin/sqair-data generate --out runs/mnist_data --split test --num 10000 --seed 1
	$(VENV)/bin/sqair-train --workdir runs/track_s$(SEED) --preset tracking --data runs/mnist_data --set seed=$(SEED)
	$(VENV)/bin/python -m trainers.pretrained --workdir runs/track_s$(SEED) --checkpoint runs/track_s$(SEED)/checkpoints/ckpt-25000 --name mnist --data runs/mnist_data --num 1000

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
