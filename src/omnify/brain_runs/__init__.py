"""Brain runs: load a client's normalized data, run the brain, store its recommendations."""
