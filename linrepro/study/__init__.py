"""One analysis module per notebook, and the run records notebooks read and write."""
