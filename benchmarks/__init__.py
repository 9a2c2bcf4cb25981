"""Benchmarks for tap-pipedrive; run them with ``python -m benchmarks`` (see docs/benchmarks.md)."""
