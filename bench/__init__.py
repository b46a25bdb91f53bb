"""Benchmarks that print figures (run each as `python bench/NAME.py`, or all with `make bench`)."""
