"""Benchmarks, each runnable as ``python -m bench.<name>``; none of them is a test.

Figures are printed against a baseline measured in the same run on the same machine, so a ratio
means something even on a busy or slow host; absolute µs do not travel between machines.
"""
