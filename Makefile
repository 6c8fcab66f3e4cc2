# Two commands on a fresh machine:  `make book`  (build the book)  and  `make test`.
# Everything else is bootstrapped: the virtual environment, the pinned dependencies,
# and (for the browser test, where possible) Debian's chromium.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed
export BRIDGEOUT_DATA ?= $(abspath ../shared/data)
export PYTHONUNBUFFERED := 1

.PHONY: install book test test-fast bench grid wheelhouse browser clean lock

install: $(STAMP)

# Installs the project with every dependency pinned by requirements.lock
# (torch/torchvision as a matching pair), then proves that the pair imports.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[all]'
	$(PY) -c "import torch, torchvision, torch_pruning; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# The book, warnings as errors. Theory/teaching notebooks execute (cached in
# _build/.jupyter_cache); result pages read the committed tables in data/results/.
# The execution cache keys on notebook source only, so it is dropped whenever the result
# tables, the paper's curves or the package that computes from them change: result pages must
# never show stale numbers.
RESULTS_HASH = $(shell cat data/results/*.csv data/results/*.csv.gz data/reference/*.csv bridgeout/*.py bridgeout/*/*.py 2>/dev/null | sha256sum | cut -c1-16)
book: install
	@if [ "$$(cat _build/.results-hash 2>/dev/null)" != "$(RESULTS_HASH)" ]; then \
	  echo "result tables or package changed: dropping the execution cache and doctrees"; rm -rf _build/.jupyter_cache _build/.doctrees; fi
	$(VENV)/bin/jupyter-book build . --path-output . -W -n --keep-going
	@echo "$(RESULTS_HASH)" > _build/.results-hash
	@echo "book: $(abspath _build/html/index.html)"

# Debian's chromium for the browser test of the built book. Installed system-wide only on
# request (BRIDGEOUT_INSTALL_BROWSER=1, which CI sets in .ci/run), as root with apt; otherwise
# that one test is skipped with the reason printed.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$${BRIDGEOUT_INSTALL_BROWSER:-0}" != 1 ]; then \
	    echo "note: chromium not found; the browser test will be skipped (BRIDGEOUT_INSTALL_BROWSER=1 make test installs Debian's chromium as root)"; \
	  elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "warning: chromium not found and not installable here (needs root and apt-get); the browser test will be skipped"; fi; }

test: install browser book
	$(PY) -m pytest -q tests

# Unit tests only: no real-data training, no book, no Jupyter kernel, runner process or daemon.
test-fast: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(or $(JOBS),auto) -m "not slow and not integration" tests

bench: install
	$(PY) benchmarks/bridgeout_overhead.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/prune_sweep.py

# make grid SPEC=notebooks/grids/mnist-teaching-5seed.yaml
SPEC ?= notebooks/grids/mnist-teaching-5seed.yaml
grid: install
	$(PY) -m bridgeout.grid $(SPEC)

# Wheels of the non-torch dependencies (papermill, ipykernel, ... and what they need)
# for an offline GPU node that already has torch:
#   make wheelhouse WHEEL_PYTHON=3.12 WHEEL_PLATFORM=manylinux_2_28_x86_64
WHEEL_PYTHON   ?= 3.12
WHEEL_PLATFORM ?= manylinux_2_28_x86_64
wheelhouse: install
	$(PY) -m bridgeout.wheelhouse --python-version $(WHEEL_PYTHON) --platform $(WHEEL_PLATFORM) --dest wheelhouse

# Re-pin requirements.lock from a fresh resolve of pyproject.toml's ranges.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[all]' 'torch==2.14.1' 'torchvision==0.29.1'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e' > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf _build .pytest_cache
