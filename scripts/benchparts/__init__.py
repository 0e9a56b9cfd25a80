"""Benchmark parts for scripts/bench.py; one module per part."""
