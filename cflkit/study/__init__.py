"""Study tools: the benchmark grid (compare) and batch runs of notebooks (batch)."""
