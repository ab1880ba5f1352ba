# Documentation and benchmarks. The tests and linters run as the README says.

PYTHON ?= .venv/bin/python
BENCH_PYTHON ?= .venv-bench/bin/python

.PHONY: docs docs-outputs docs-check docs-serve bench bench-quick reliability

# Re-run every example in docs/ (rewriting the output blocks), then build the site.
docs: docs-outputs
	$(PYTHON) -m mkdocs build --strict

docs-outputs:
	$(PYTHON) tools/docs.py

# Fail if an output block no longer matches what its example prints.
docs-check:
	$(PYTHON) tools/docs.py --check

docs-serve:
	$(PYTHON) -m mkdocs serve

# Re-run the reliability suite and rewrite the tables of docs/reliability.md from the run.
reliability:
	LMSTREAM_WRITE_DOCS=1 $(PYTHON) -m pytest tests/reliability

# Run every benchmark; rewrites docs/benchmarks.md, its plots and the README headline.
bench: .venv-bench/.installed
	$(BENCH_PYTHON) -m bench

bench-quick: .venv-bench/.installed
	$(BENCH_PYTHON) -m bench --quick

# langchain-core, the baseline, goes on top without its dependencies (see pyproject.toml).
.venv-bench/.installed: pyproject.toml
	test -d .venv-bench || python3 -m venv .venv-bench
	.venv-bench/bin/pip install -e '.[bench]'
	.venv-bench/bin/pip install --no-deps langchain-core==1.8.2
	touch $@
