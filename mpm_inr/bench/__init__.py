"""Benchmarks (`make bench`): simulator steps/s and time-to-R² of our recipe vs the reference recipe and SVD."""
