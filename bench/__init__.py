"""Benchmarks: lmstream against langchain-core and the raw floors (not part of the tests).

``python -m bench`` runs every benchmark module present; ``python -m bench.core`` the core
comparison alone. See ``docs/benchmarks.md``.
"""
