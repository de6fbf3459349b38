# The two commands of the README. Each creates .venv when it is missing and installs the project
# with the extras it needs; a stamp file per extra set keeps reruns quick.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[plot,io]'
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.stamp-demo

demo: $(VENV)/.stamp-demo
	$(PY) -m kmeans_stream.cli demo --out demo_output

lint: $(VENV)/.stamp-dev
	$(PY) -m ruff check kmeans_stream tests benchmarks

# pytest exits 5 when it collected no test: that is a failure here, not a green run.
test: lint
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# Benchmarks write their sections of benchmarks/RESULTS.md. OPENBLAS_CORETYPE slows a current
# numpy on this machine, so it is unset here (never in tests or CI).
BENCH_ENV := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE

$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.stamp-dev
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.stamp-bench
	$(BENCH_ENV) $(PY) benchmarks/cpu.py
	$(BENCH_ENV) $(PY) benchmarks/io_throughput.py
	$(BENCH_ENV) $(PY) benchmarks/stream_memory.py
	$(BENCH_ENV) $(PY) benchmarks/partial_fit.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
