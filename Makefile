# The two commands a fresh machine needs: `make demo` and `make test`. Both set up what they need.
PY := .venv/bin/python
.PHONY: setup demo test test-lit test-python bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m lrc.demo

test: setup
	@$(MAKE) --no-print-directory test-lit test-python

test-lit:
	.venv/bin/lit -sv test/lit

# One pytest run per package: each has its own conftest.py and test module names.
test-python:
	$(PY) -m pytest -q -p no:cacheprovider test/python
	$(PY) -m pytest -q -p no:cacheprovider pruning/tests
	$(PY) -m pytest -q -p no:cacheprovider apps/tests

bench: setup
	$(PY) bench/dense.py

clean:
	rm -rf build out test/lit/*/Output .pytest_cache
