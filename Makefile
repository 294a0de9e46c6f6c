# The two set-up commands, on a fresh machine: `make test` and `make run`.
# Both create .venv once (idempotent) and install the pinned dependencies into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EPOCHS ?= 1000
NOISE ?= 0.7

.PHONY: install test test-slow run bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install  ## the quick suite: synthetic MNIST, tiny networks
	$(PY) -m pytest

test-slow: install  ## real MNIST, fetched as a fresh machine would, and real training
	$(PY) -m pytest -m slow

run: install  ## fetch MNIST, train (resumes by itself: after `make run EPOCHS=3`, run `make run EPOCHS=3` again), then draw both kinds of images
	$(PY) cli.py download
	$(PY) cli.py train --epochs $(EPOCHS)
	$(PY) cli.py generate --mode prior
	$(PY) cli.py generate --mode digit --noise $(NOISE)

bench: install  ## training speed, floor, memory and start-up figures (about 10 minutes)
	$(PY) bench/train_speed.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
