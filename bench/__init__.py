"""Benchmarks: lmstream against langchain-core and the raw floors (not part of the tests).

``python -m bench`` runs them all and publishes ``docs/benchmarks.md`` with its plots;
``python -m bench.core`` (or ``llamacpp``, ``server``, ``openai``) runs one and prints it.
"""
