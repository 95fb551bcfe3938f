# Two commands on a fresh machine with Python 3.8-3.11 and make:
#   make demo   virtual environment + package with extras + the seed example
#   make test   the same set-up + the test suite (slow tests: make test-slow)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench bench-torch bench-peers bench-taylor long-run distributed clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,examples,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/ode_seed.py --plot ode_seed.png

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q tests

test-slow: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m slow --runslow tests

# pyflakes' checks (flake8 --select=F honours the noqa of imports made for their
# registrations) over the package, tests, examples and benchmarks
lint: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check flake8==7.3.0
	$(BIN)/python -m flake8 --select=F mxgradlayer tests examples benchmarks

clean:
	rm -rf $(VENV) $(JAX_VENV) build *.egg-info .pytest_cache

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# PyTorch side by side: torch is installed into .venv for benchmarking only
bench-torch: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python benchmarks/run.py --torch --repeat 3

# JAX, and folx's forward Laplacian: JAX needs NumPy 2 (MXNet NumPy < 1.24), so they get a
# virtual environment of their own; for benchmarking only, never dependencies
JAX_VENV := .venv-jax
JAX_STAMP := $(JAX_VENV)/.installed-jax-0.10.2-folx-0.2.30
$(JAX_STAMP):
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		'jax[cpu]==0.10.2' folx==0.2.30
	touch $@

# every workload, MXNet, PyTorch and JAX/folx side by side in one run, three repeats
bench-peers: $(STAMP) $(JAX_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python benchmarks/run.py --torch --jax-python $(JAX_VENV)/bin/python --repeat 3

# Taylor mode against nesting, PyTorch and jax.experimental.jet
bench-taylor: $(STAMP) $(JAX_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python benchmarks/taylor.py --threads 2 --repeat 3 --jax-python $(JAX_VENV)/bin/python

# 10,000 steps of the Poisson workload; fails if resident memory grows after warm-up
long-run: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/run.py --long-run 10000

# two workers, a server and a scheduler on loopback, compared with one process
distributed: $(STAMP)
	$(BIN)/python examples/distributed/launch.py --check
