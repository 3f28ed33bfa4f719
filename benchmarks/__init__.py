"""Benchmark helpers of soft-hf: the official-forward baseline and the landmark-accuracy experiment."""
