"""Benchmarks and the long reliability runs: `make bench` (`python -m bench`). See bench/__main__.py."""
