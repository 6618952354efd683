# tbcube: the two commands.
#   make demo   fresh machine -> .venv, install, full demo on the embedded simulator archive
#   make test   fresh machine -> .venv, install, whole test suite (slow cases included)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tbcube-installed
DEMO_ROOT ?= demo-output

# JAX is 2-3x slower under glibc's default allocator on these machines (see docs/operations.md).
export MALLOC_ARENA_MAX := 1
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 68719476736
export JAX_PLATFORMS ?= cpu
export TBCUBE_REAL_DATA ?= $(abspath ../shared/data/real)

.PHONY: demo test install lint clean bench

$(STAMP): pyproject.toml deploy/docker/requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The lock is the image's environment; constraining to it makes CI test exactly what ships
	# (an unconstrained resolve picked a different dask on a fresh machine).
	$(BIN)/python -m pip install --quiet -c deploy/docker/requirements.lock -e ".[test]"
	# pyl4c is the L4C reference oracle (tests only); its declared GDAL dependency does not
	# build here and is not needed by the modules the tests use, so install it without deps.
	$(BIN)/python -m pip install --quiet --no-deps "pyl4c==0.18.1"
	touch $(STAMP)

install: $(STAMP)

# JAX's persistent compilation cache: a re-run (and the second of the two local workers) loads
# the demo's kernels instead of compiling them again (docs/operations.md).
demo: export JAX_COMPILATION_CACHE_DIR ?= $(abspath .cache/jax)
demo: export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0.2
demo: export JAX_COMPILATION_CACHE_MAX_SIZE ?= 1073741824
demo: $(STAMP)
	$(BIN)/tbcube demo --root $(DEMO_ROOT)

# Two pytest processes (pytest-xdist): the suite's tests spend much of their time starting
# processes and waiting on I/O, so two share the 2-core CI machine well (13.6 -> 9.9 min,
# docs/testing.md). A whole file goes to one process, so module fixtures are built once.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/tbcube bench all --out bench-results

clean:
	rm -rf $(VENV) $(DEMO_ROOT) .pytest_cache .cache bench-results
