"""Throughput benchmarks for Conveyor and the baselines it is compared against."""
