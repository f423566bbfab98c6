"""Training loops, each a paper's algorithm."""
