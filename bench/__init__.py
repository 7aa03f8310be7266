"""`make bench`: benchmarks against a CareBridge stack the harness starts itself (see bench/run.py)."""
