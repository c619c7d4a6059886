"""Write the golden runs that ``tests/test_equivalence.py`` compares every later version with.

Run once, on the commit named in ``tests/golden/README.md``; it writes one run directory per
config of :data:`CONFIGS` into ``tests/golden/runs/<name>/`` (config.json, history.csv,
summary.json, diagnostics.csv), as that commit's ``cflkit.run`` wrote them.

    CFLKIT_OFFLINE_DIRS=../shared/data .venv/bin/python tests/golden/make.py
"""
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SMALL = dict(dataset="digits", clients=12, groups=3, rounds=4, local_epochs=1, seed=0)
# name -> config fields (the release's flat Config); together they cover every method
CONFIGS = {
    "fedavg": dict(method="fedavg", scenario="rotation"),
    "fedprox": dict(method="fedprox", scenario="label_swap", mu=0.1),
    "local": dict(method="local", scenario="rotation"),
    "oracle": dict(method="oracle", scenario="label_swap"),
    "random": dict(method="random", scenario="rotation", clusters=3),
    "centralized": dict(method="centralized", scenario="rotation"),
    "sattler": dict(method="sattler", scenario="label_swap", eps1=10.0, eps2=0.01, warmup_rounds=1, rounds=5),
    "ifca": dict(method="ifca", scenario="label_swap"),
    "ifca_restarts": dict(method="ifca", scenario="rotation", restarts=2, seed=1),
    "flhc": dict(method="flhc", scenario="rotation", warmup_rounds=1),
    "kmeans": dict(method="kmeans", scenario="label_swap"),
    "fedclust": dict(method="fedclust", scenario="rotation"),
    "pacfl": dict(method="pacfl", scenario="rotation", distance_threshold=30.0),
    "ocfl": dict(method="ocfl", scenario="label_swap", rounds=6),
    "cornflqs": dict(method="cornflqs", scenario="label_swap", rounds=6),
    "cornflqs_ward": dict(method="cornflqs", scenario="rotation", clusterer="agglomerative", rounds=6),
    "fedgroup": dict(method="fedgroup", scenario="rotation"),
    "fedgroup_madc": dict(method="fedgroup_madc", scenario="label_swap"),
    "clustered_gradient": dict(method="clustered", scenario="label_swap", representation="gradient",
                               trigger="init", clusterer="spectral"),
    "clustered_outputs": dict(method="clustered", scenario="rotation", representation="outputs",
                              clusterer="hdbscan", trigger="every", metric="cosine"),
    "clustered_descriptors": dict(method="clustered", scenario="dirichlet+quantity_skew", representation="descriptors",
                                  trigger="init", clusterer="gmm", metric="euclidean"),
    "clustered_bipartition": dict(method="clustered", scenario="rotation", clusterer="bipartition",
                                  distance_threshold=0.5, trigger="once", warmup_rounds=1),
    "clustered_temperature": dict(method="clustered", scenario="label_swap", trigger="temperature",
                                  clusterer="kmeans", representation="weights", metric="euclidean", rounds=6),
    "metadata_heart": dict(method="metadata", dataset="heart_disease", scenario="natural", clients=4, groups=1),
    "ifca_heart": dict(method="ifca", dataset="heart_disease", scenario="natural", clients=4, groups=1, clusters=2),
    "flhc_air": dict(method="flhc", dataset="air_quality", scenario="natural", clients=12, groups=2, rounds=3,
                     warmup_rounds=1),
}


def main():
    from cflkit import Config, run

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "runs"
    for name, fields in CONFIGS.items():
        config = Config().replace(**{**SMALL, **fields})
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        run(config, out=target)
        (target / "models.npz").unlink(missing_ok=True)  # not compared; keeps the fixtures small
        (target / ".cflkit-output.json").unlink(missing_ok=True)
        print(name, json.loads((target / "summary.json").read_text())["ari"], file=sys.stderr)


if __name__ == "__main__":
    main()
