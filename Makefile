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

test-python:
	$(PY) -m pytest -q -p no:cacheprovider test/python $(wildcard pruning/tests) $(wildcard apps/tests)

bench: setup
	$(PY) bench/dense.py

clean:
	rm -rf build out test/lit/*/Output .pytest_cache
