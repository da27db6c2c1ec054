"""Benchmarks and calibrations run by hand (see bench/README.md); not part of the package."""
