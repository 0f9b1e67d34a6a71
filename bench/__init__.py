"""Benchmarks: `make bench`. Speed and memory are measured here, never asserted in tests."""
