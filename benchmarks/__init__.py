"""Benchmarks: the Triton LIF and whole models against the reference implementations."""
