"""Benchmarks: `python -m bench [name ...]` (or `make bench`). Figures go to bench/results/.

Speed is measured here, never with timed asserts in the tests. See bench/README.md.
"""
