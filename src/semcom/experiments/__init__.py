"""One module per experiment (the main run, benchmarks, reproduced tables and figures)."""
