"""Benchmark harness behind `make bench`; run it with ``python -m tests.bench``."""
