"""Throughput benchmarks: ``python -m benchmarks.<name>``."""
