"""Benchmarks of the archiving job: `make bench`, `make bench-scale` (see bench/README.md)."""
