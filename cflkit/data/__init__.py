"""The real datasets: where their files come from, where they are kept, how they are read.

``cache`` finds, downloads and checks files (offline directories, then the download
cache); one module per source reads them into a :class:`~cflkit.core.datasets.Dataset`:
``heart`` (UCI Heart Disease, 4 hospitals), ``air_quality`` (UCI Beijing Multi-Site Air
Quality, 12 stations), ``medmnist`` (MedMNIST ``.npz`` files), ``mnist`` (MNIST and
Fashion-MNIST through the Keras dataset files). ``data/README.md`` lists sources,
licences, citations, checksums and every preprocessing choice.
"""
from __future__ import annotations

from . import air_quality, heart, medmnist, mnist, parkinsons, physionet2012, pm25_cities, tcga_brca
from .cache import ChecksumError, DataError, Source, cache_dir, fetch, offline_dirs, status

SOURCES: dict[str, Source] = {
    "heart_disease_uci": heart.SOURCE,
    "beijing_multisite_air_quality": air_quality.SOURCE,
    "parkinsons_telemonitoring": parkinsons.SOURCE,
    "pm25_five_chinese_cities": pm25_cities.SOURCE,
    "physionet_challenge_2012": physionet2012.SOURCE,
    "fed_tcga_brca": tcga_brca.SOURCE,
    **{name: medmnist.source(name) for name in medmnist.FILES},
    "mnist": mnist.MNIST,
    "fashion_mnist": mnist.FASHION,
}


def find_source(name: str) -> tuple[str, Source]:
    """The source called ``name``, or the one a dataset called ``name`` is built from."""
    if name in SOURCES:
        return name, SOURCES[name]
    for key, src in SOURCES.items():
        if name in src.datasets:
            return key, src
    names = sorted(set(SOURCES) | {d for s in SOURCES.values() for d in s.datasets})
    raise ValueError(f"unknown dataset or source {name!r}; choose one of: {', '.join(names)}")


def fetch_source(name: str, progress: bool = False) -> dict:
    """Make every file of source (or dataset) ``name`` available and verified; their paths."""
    key, src = find_source(name)
    if src in (mnist.MNIST, mnist.FASHION):
        return mnist.paths(src, progress)
    if src is physionet2012.SOURCE:  # 8000 stay files, checked through manifests (its module)
        return physionet2012.fetch_files(progress)
    return fetch(src, progress=progress)


def source_status(key: str) -> tuple[str, int]:
    """Like :func:`cache.status`, also finding MNIST files in Keras's own cache."""
    src = SOURCES[key]
    if src is physionet2012.SOURCE:
        return physionet2012.status()
    where, size = status(src)
    if where == "missing" and src in (mnist.MNIST, mnist.FASHION):
        keras_dirs = (mnist.keras_cache(), mnist.keras_cache() / src.name)
        found = [d / f.name for f in src.files for d in keras_dirs if (d / f.name).is_file()]
        if len(found) == len(src.files):
            return "keras cache", sum(p.stat().st_size for p in found)
    return where, size


__all__ = ["SOURCES", "ChecksumError", "DataError", "cache_dir", "fetch_source", "find_source",
           "offline_dirs", "source_status"]
