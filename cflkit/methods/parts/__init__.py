"""The parts server-side clustered methods combine: representation, clusterer, trigger."""
