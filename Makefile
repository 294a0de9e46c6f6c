# The two set-up commands, on a fresh machine: `make test` and `make run`.
# Both create .venv once (idempotent) and install the dependencies into it at constraints.txt's exact versions.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EPOCHS ?= 1000
NOISE ?= 0.7
# Debian's chromium, the binary behind its /usr/bin/chromium wrapper (the browser tests launch it)
CHROMIUM ?= /usr/lib/chromium/chromium

.PHONY: install test test-slow browser run bench bench-load bench-prior bench-labels bench-explore clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install  ## the quick suite: synthetic MNIST, tiny networks
	$(PY) -m pytest

test-slow: install  ## real MNIST, fetched as a fresh machine would, real training, and the explorer in chromium
	$(PY) -m pytest -m slow

browser:  ## the system's chromium for the explorer's browser tests: installed with apt-get when missing (as root)
	@test -x $(CHROMIUM) || { apt-get update && apt-get install -y chromium; }

run: install  ## fetch MNIST, train (resumes by itself: after `make run EPOCHS=3`, run `make run EPOCHS=3` again), then draw both kinds of images
	$(PY) cli.py download
	$(PY) cli.py train --epochs $(EPOCHS)
	$(PY) cli.py generate --mode prior
	$(PY) cli.py generate --mode digit --noise $(NOISE)

bench: install  ## training speed, floor, memory and start-up figures (about 10 minutes)
	$(PY) bench/train_speed.py

bench-load: install  ## the epoch quiet, beside a busy process per spare CPU and as two runs at once, auto threads against fixed (about 8 minutes)
	$(PY) bench/load.py

bench-prior: install  ## the VampPrior's training step against the standard prior's, K 500, 100 and 50, interleaved (about 5 minutes)
	$(PY) bench/prior_ab.py
	$(PY) bench/prior_ab.py --objective iwae --particles 5

bench-labels: install  ## the labels model's (M2, --labels 100) training step against the unsupervised one, fp32 and bf16, interleaved (about 3 minutes); the shipped models' codes as M1 features for 100 labels
	$(PY) bench/labels_ab.py --bf16
	$(PY) bench/labels_m1_probe.py
	$(PY) bench/labels_m1_probe.py --model mnist-vamp

bench-explore: install browser  ## the explorer's slider and start-up times in chromium, and screenshots of its panels
	$(PY) bench/explore_speed.py --screenshots results/explore

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
