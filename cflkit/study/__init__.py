"""Study tools: the benchmark grid (compare), batch runs of notebooks (batch), the tuning protocol
(tune), the rank statistics of a benchmark (stats) and of a suite's finished runs (suite)."""
