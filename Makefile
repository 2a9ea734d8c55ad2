# The two commands a fresh machine needs: `make demo` and `make test`. Both set up what they need.
PY := .venv/bin/python
.PHONY: setup demo test test-lit test-python bench train clean

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
	$(PY) bench/table1.py

# Reproduce the shipped app checkpoints (dense training, then ADMM pruning + masked retraining, the
# equal-steps dense references the quality report judges them against, superres's seed-1 reference
# for the two-seed rate sweep, and the distilled superres variant of docs/apps.md) and the quality
# report. About two and a half hours on one core; the demo and tests need none of it.
train: setup
	for app in superres color style; do $(PY) -m lrapps.train $$app || exit 1; done
	for app in superres color style; do $(PY) -m lrapps.prune $$app || exit 1; done
	for app in superres color style; do $(PY) -m lrapps.prune $$app --reference || exit 1; done
	$(PY) -m lrapps.prune superres --reference --seed 1 --out apps/checkpoints/superres_dense_equal_seed1.pt
	$(PY) -m lrapps.prune superres --distill 16 --teacher apps/checkpoints/superres_dense_equal.pt \
	    --out apps/checkpoints/superres_pruned_distill.pt
	$(PY) -m lrapps.quality

clean:
	rm -rf build out test/lit/*/Output .pytest_cache
