"""Explaining the clusters a CFL method found: why clients were grouped, how the cluster
models differ (design notes: the README section "Explaining the clusters").

Four layers, one module each, every explainer declaring the privacy tier it needs
(T0: protocol only, T1: client summaries, T2: local attributions):

- :mod:`.descriptors`, :mod:`.membership` — why is client i in cluster k?
- :mod:`.contrast` — how do the cluster models differ (LIME, prediction agreement)?
- :mod:`.divergence` — per-layer distances between cluster models and to the global model;
- :mod:`.agreement` — agreement of the clustering with the planted heterogeneity.

:mod:`.report` puts them together for a finished run (``cflkit explain RUN_DIR``).
Nothing here imports TensorFlow at module level.
"""
