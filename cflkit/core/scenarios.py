"""Scenarios: turn a dataset into clients with a known kind of heterogeneity.

Each client gets a ground-truth *group*; clients of one group share one data
distribution, clients of different groups differ in the way the scenario plants. The
heterogeneities follow the CFL literature's taxonomy (Kairouz et al. 2021, §3.1; Ghosh
et al. 2020 and Sattler et al. 2021 for rotation and label swap):

- ``iid`` — every client draws from the pooled distribution (one group);
- label distribution skew: ``dirichlet`` (each group's class proportions ~ Dir(alpha)),
  ``shards`` (each group sees ``classes_per_client`` classes, disjoint across groups
  while groups × classes_per_client ≤ classes), ``label_skew`` (each group lacks
  ``removed_classes`` classes);
- concept shift on features: ``rotation`` (images by 0/90/180/270°, or by multiples of
  ``rotation_angle`` degrees, the difficulty knob: small angles are hard to tell apart;
  tabular data by a fixed feature permutation per group);
- concept shift on labels: ``label_swap`` (a label permutation per group; ``swapped_labels``
  k >= 2 makes it a cycle over k random classes, the difficulty knob: fewer moved labels,
  closer groups);
- feature distribution skew: ``feature_skew`` (per group one of noise, scale, offset for
  tabular data; erosion, dilation, inversion, noise for images);
- ``quantity_skew`` — client sizes from a power law (or given ratios); one group;
- ``natural`` — no planting: one client per site (hospital, station) of a dataset that
  carries per-row sites (``Dataset.meta["site"]``), see :func:`make_natural_federation`.

Scenarios compose with ``+`` (``rotation+quantity_skew``): at most one label-distribution
part, any transforms, optionally ``quantity_skew``. Group 0 is always the untouched data.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .datasets import Dataset
from .federation import Federation

PARTITIONS = {
    "iid": "every client draws from the pooled data (one group)",
    "dirichlet": "label skew: each group's class proportions ~ Dirichlet(alpha)",
    "shards": "label skew: each group sees only classes_per_client classes (pathological non-IID)",
    "label_skew": "label skew: each group lacks removed_classes classes",
}
TRANSFORMS = {
    "rotation": "concept shift on features: images rotated 0/90/180/270 deg, tabular features permuted per group",
    "label_swap": "concept shift on labels: a different label permutation per group",
    "feature_skew": "feature skew per group: noise/scale/offset (tabular), erosion/dilation/inversion/noise (images)",
}
SIZINGS = {
    "quantity_skew": "quantity skew: client sizes from a power law (quantity_exponent) or quantity_ratios",
}
SCENARIOS = {**PARTITIONS, **TRANSFORMS, **SIZINGS}  # the planted ones
NATURAL = {
    "natural": "real federation: one client per site (hospital / station) of a dataset with sites; "
               "group = a site attribute (e.g. urban / suburban) or one group",
}
DEFAULT_CLIENTS, DEFAULT_GROUPS = 16, 4  # make_federation's (and Config's) defaults
NATURAL_TEST_FRACTION = 0.25  # make_natural_federation's (and Config's) default test_fraction

FEATURE_SKEWS = {
    "image": ("none", "erosion", "dilation", "inversion", "noise"),
    "tabular": ("none", "noise", "scale", "offset"),
}
MIN_CLIENT_SAMPLES = 4


def parse_scenario(scenario: str) -> list[str]:
    """Split ``a+b`` into parts and check that they exist and combine."""
    parts = [p.strip() for p in str(scenario).split("+")]
    for p in parts:
        if p not in SCENARIOS and p not in NATURAL:
            raise ValueError(f"unknown scenario {p!r}; choose one of: {', '.join({**SCENARIOS, **NATURAL})} "
                             f"(combine with '+')")
    if "natural" in parts and len(parts) > 1:
        raise ValueError(f"scenario {scenario!r}: 'natural' (the real sites) cannot be combined with planted "
                         f"parts; use 'natural' alone, or planted parts on the pooled rows")
    if len(set(parts)) != len(parts):
        raise ValueError(f"scenario {scenario!r} names a part twice")
    partitions = [p for p in parts if p in PARTITIONS]
    if len(partitions) > 1:
        raise ValueError(f"scenario {scenario!r} combines {' and '.join(partitions)}; use at most one of: "
                         f"{', '.join(PARTITIONS)}")
    return parts


def make_federation(dataset: Dataset, scenario: str = "iid", clients: int = 16, groups: int = 4,
                    seed: int = 0, test_fraction: float = 0.25, samples_per_client: int = 0,
                    alpha: float = 0.5, classes_per_client: int = 2, removed_classes: int = 0,
                    skew: str = "", noise: float = 0.5, quantity_exponent: float = 1.5,
                    quantity_ratios: tuple = (), rotation_angle: float = 0.0, swapped_labels: int = 0) -> Federation:
    """Build a :class:`Federation` of ``clients`` clients from ``dataset``.

    ``groups`` ground-truth groups of (near-)equal client counts are planted by every
    group-based part; ``iid`` and ``quantity_skew`` alone plant one group. By default the
    clients' samples are disjoint (an error if the dataset is too small);
    ``samples_per_client > 0`` draws that many per client, reusing samples across clients
    when the dataset runs out. The same arguments always give the same federation.
    """
    parts = parse_scenario(scenario)
    if parts == ["natural"]:
        return _natural_instead(dataset, clients, groups, seed, test_fraction, samples_per_client)
    _check_args(dataset, parts, clients, groups, test_fraction, samples_per_client, alpha,
                classes_per_client, removed_classes, noise, quantity_exponent, quantity_ratios)
    _check_knobs(dataset, parts, groups, rotation_angle, swapped_labels)
    # one generator for every draw, in this order: groups, sizes, proportions, rows, transforms, splits
    rng = np.random.default_rng(seed)
    grouped = any(p not in ("iid", "quantity_skew") for p in parts)
    n_groups = groups if grouped else 1
    group = rng.permutation(np.arange(clients) % n_groups)
    sizes = _client_sizes(len(dataset), clients, samples_per_client,
                          "quantity_skew" in parts, quantity_exponent, quantity_ratios, rng)
    partition = next((p for p in parts if p in PARTITIONS), "iid")
    proportions, group_names = _class_proportions(partition, dataset, group, n_groups, alpha,
                                                  classes_per_client, removed_classes, rng)
    rows = _draw(dataset.y, dataset.n_classes, sizes, proportions, reuse=samples_per_client > 0, rng=rng)
    names = _planted_names(group_names, parts, dataset, n_groups, skew, rotation_angle, swapped_labels)
    xs, ys, transforms = _transformed_clients(dataset, parts, rows, group, n_groups, skew, noise, rng,
                                              rotation_angle, swapped_labels)
    train_index, test_index = _split_clients(ys, test_fraction, rng)
    params = dict(clients=clients, groups=n_groups, seed=seed, test_fraction=test_fraction,
                  samples_per_client=samples_per_client, alpha=alpha, classes_per_client=classes_per_client,
                  removed_classes=removed_classes, skew=skew, noise=noise,
                  **({"rotation_angle": rotation_angle} if rotation_angle else {}),
                  **({"swapped_labels": swapped_labels} if swapped_labels else {}),
                  quantity_exponent=quantity_exponent, quantity_ratios=list(quantity_ratios))
    fed = _planted_federation(dataset, scenario, xs, ys, train_index, test_index, group, names, params)
    fed.recipe = dict(dataset=dataset, transforms=transforms,  # what drift needs to redraw a client
                      proportions=None if proportions is None else
                      np.stack([proportions[np.flatnonzero(group == g)[0]] for g in range(n_groups)]))
    return fed


def _natural_instead(dataset, clients, groups, seed, test_fraction, samples_per_client) -> Federation:
    """``make_federation``'s arguments for scenario ``natural``: a site federation, which keeps every row."""
    if samples_per_client:
        raise ValueError(f"scenario 'natural' keeps every site's own rows; samples_per_client must be 0, "
                         f"got {samples_per_client}")
    return make_natural_federation(dataset, clients=clients, groups=groups, seed=seed, test_fraction=test_fraction)


def _planted_names(group_names, parts, dataset, n_groups, skew, rotation_angle=0.0, swapped_labels=0) -> list:
    """A name per group: its label-distribution part's name joined with each transform's."""
    names = list(group_names)
    for part in parts:
        if part in TRANSFORMS:
            names = _join_names(names, _transform_names(part, dataset, n_groups, skew, rotation_angle, swapped_labels))
    return names


def _transformed_clients(dataset, parts, rows, group, n_groups, skew, noise, rng, rotation_angle=0.0,
                         swapped_labels=0) -> tuple[list, list, dict]:
    """Each client's features and labels with its group's transforms applied, in the scenario's
    part order; and the group transforms (:func:`group_transforms`), to redraw a client later."""
    transforms = group_transforms(dataset, parts, n_groups, skew, noise, rng, rotation_angle, swapped_labels)
    xs, ys = [], []
    for c in range(len(rows)):
        x, y = apply_transforms(dataset.x[rows[c]].copy(), dataset.y[rows[c]].copy(), int(group[c]), transforms, rng)
        xs.append(x)
        ys.append(y)
    return xs, ys, transforms


def group_transforms(dataset, parts, n_groups, skew, noise, rng, rotation_angle=0.0, swapped_labels=0) -> dict:
    """What a group's transforms need, drawn once per federation: the label permutations
    (``label_swap``) and the tabular feature permutations (``rotation``)."""
    perms = None
    if "label_swap" in parts:
        perms = _label_cycles(dataset.n_classes, n_groups, swapped_labels, rng) if swapped_labels else \
            _label_perms(dataset.n_classes, n_groups, rng)
    feature_perms = ([np.arange(dataset.x.shape[1])] +
                     [rng.permutation(dataset.x.shape[1]) for _ in range(n_groups - 1)]) \
        if ("rotation" in parts and dataset.kind == "tabular") else None
    return dict(parts=list(parts), kind=dataset.kind, n_groups=n_groups, perms=perms, feature_perms=feature_perms,
                skews=_skews(dataset, skew) if "feature_skew" in parts else None, noise=noise,
                rotation_angle=rotation_angle)


def apply_transforms(x, y, g: int, transforms: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``x``, ``y`` as group ``g`` holds them (feature-skew noise drawn from ``rng``)."""
    t = transforms
    for part in t["parts"]:
        if part == "rotation":
            x = _rotate(x, g, t["n_groups"], t.get("rotation_angle", 0.0)) if t["kind"] == "image" \
                else x[:, t["feature_perms"][g]]
        elif part == "label_swap":
            y = t["perms"][g][y]
        elif part == "feature_skew":
            x = _feature_skew(x, t["skews"][g % len(t["skews"])], g, t["n_groups"], t["noise"], rng)
    return x, y


def _split_clients(ys, test_fraction, rng) -> tuple[list, list]:
    """Each client's train and test rows, as indices into the pooled rows (clients in order)."""
    train_index, test_index, offset = [], [], 0
    for y in ys:
        n = len(y)
        n_test = min(max(1, int(round(n * test_fraction))), n - 1)
        order = rng.permutation(n)
        test_index.append(offset + np.sort(order[:n_test]))
        train_index.append(offset + np.sort(order[n_test:]))
        offset += n
    return train_index, test_index


def _planted_federation(dataset, scenario, xs, ys, train_index, test_index, group, names, params) -> Federation:
    """The pooled rows as a :class:`Federation`, with its one-line description."""
    fed = Federation(np.concatenate(xs).astype(np.float32), np.concatenate(ys), train_index, test_index, group,
                     dataset.n_classes, dataset.task, dataset.kind, dataset.name, scenario, tuple(names),
                     params=params, client_meta={"planted": [names[g] for g in group]})
    n_groups, train_sizes = params["groups"], fed.sizes
    fed.description = (f"{dataset.name} · {scenario} · {params['clients']} clients in {n_groups} group"
                       f"{'s' if n_groups > 1 else ''} ({'; '.join(names)}) · "
                       f"{train_sizes.min()}–{train_sizes.max()} training samples per client")
    return fed


# -- natural federations -----------------------------------------------------------------
def make_natural_federation(dataset: Dataset, clients: int = DEFAULT_CLIENTS, groups: int = DEFAULT_GROUPS,
                            seed: int = 0, test_fraction: float = 0.25, group_by: str | None = None) -> Federation:
    """One client per site of ``dataset`` (a hospital, a station): nothing is planted.

    The dataset carries the sites: ``meta["site"]`` (site id per row), ``meta["sites"]``
    (a name per site) and ``meta["site_meta"]`` (attribute -> one value per site), which
    becomes the federation's ``client_meta``. The ground-truth group is the site attribute
    ``group_by`` (default ``meta["group_by"]``; air quality: urban / suburban); with none,
    every client is in one group. ``clients`` and ``groups`` are fixed by the sites: their
    default values (16, 4) are ignored, any other value must equal the site / group count.

    Each client's test set is the last ``test_fraction`` of its rows in time when the
    dataset has ``meta["time"]`` (no future in the training set), a seeded random share
    otherwise. A dataset with a *fixed split* keeps it: ``meta["test"]`` flags its test rows
    (PhysioNet 2012: set-b, named by ``meta["test_name"]``), each client's test set is its
    flagged rows and ``test_fraction`` does not apply (any value but its default is refused).
    Features flagged in ``meta["standardize"]`` are standardised per client
    with the mean and standard deviation of that client's *training* rows of
    ``meta["raw_x"]`` only: nothing leaks across clients or from test to train.

    The federation's extra attribute ``source_rows`` maps its pooled rows back to the
    dataset's rows (``dataset.meta["time"][fed.source_rows]`` are the rows' times).
    """
    meta = dataset.meta or {}
    _check_sites(dataset, meta, test_fraction)
    site = np.asarray(meta["site"])
    n_sites = int(site.max()) + 1
    names = tuple(meta.get("sites", [f"site {i}" for i in range(n_sites)]))
    site_meta = {k: list(v) for k, v in meta.get("site_meta", {}).items()}
    key = meta.get("group_by", "") if group_by is None else group_by
    group_names, group = _site_groups(dataset, site_meta, key, n_sites)
    _check_site_counts(dataset, names, group_names, n_sites, clients, groups)
    pooled = _site_clients(dataset, meta, site, n_sites, names, test_fraction, np.random.default_rng(seed))
    client_meta = {k: site_meta[k] for k in ([key] if key else []) + [k for k in site_meta if k != key]}
    client_meta["site"] = list(names)
    split = "fixed" if meta.get("test") is not None else "time" if meta.get("time") is not None else "random"
    return _site_federation(dataset, pooled, group, group_names, client_meta, key, seed, test_fraction, split)


def _check_sites(dataset, meta, test_fraction) -> None:
    """Refuse a dataset without per-row sites and a ``test_fraction`` outside (0, 1)."""
    if "site" not in meta:
        raise ValueError(f"scenario 'natural' needs a dataset with sites (per-row meta['site']); "
                         f"{dataset.name!r} has none: use a planted scenario, or a real federation "
                         f"such as heart_disease or air_quality")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if meta.get("test") is not None and test_fraction != NATURAL_TEST_FRACTION:
        raise ValueError(f"{dataset.name!r} has a fixed split (test set: {meta.get('test_name', 'its test rows')}); "
                         f"test_fraction does not apply: leave it at its default {NATURAL_TEST_FRACTION:g}, "
                         f"got {test_fraction}")


def _site_groups(dataset, site_meta, key, n_sites) -> tuple[list, np.ndarray]:
    """The group names (the values of site attribute ``key``, sorted; one group without it) and each site's group."""
    if key and key not in site_meta:
        raise ValueError(f"unknown group_by {key!r} for {dataset.name!r}; choose one of: {', '.join(site_meta)}")
    group_names = sorted(set(site_meta[key])) if key else ["one group (no ground truth)"]
    group = np.array([group_names.index(v) for v in site_meta[key]] if key else [0] * n_sites)
    return group_names, group


def _check_site_counts(dataset, names, group_names, n_sites, clients, groups) -> None:
    """Refuse ``clients`` or ``groups`` that are neither their default nor the sites' own count."""
    if clients not in (DEFAULT_CLIENTS, n_sites):
        raise ValueError(f"scenario 'natural' makes one client per site: {dataset.name!r} has {n_sites} sites "
                         f"({', '.join(names)}), not clients={clients}; leave clients at its default or set it "
                         f"to {n_sites}")
    if groups not in (DEFAULT_GROUPS, len(group_names)):
        raise ValueError(f"scenario 'natural' takes its groups from the sites: {dataset.name!r} has "
                         f"{len(group_names)} ({', '.join(group_names)}), not groups={groups}; leave groups at "
                         f"its default or set it to {len(group_names)}")


def _site_clients(dataset, meta, site, n_sites, names, test_fraction, rng) -> dict:
    """Per site, in site order: its rows (``x``, ``y``, ``source_rows``) and train / test indices into the pool."""
    time, raw = meta.get("time"), meta.get("raw_x")
    scale = np.asarray(meta.get("standardize", np.zeros(dataset.x.shape[1:2], dtype=bool)), dtype=bool)
    out = {"x": [], "y": [], "train_index": [], "test_index": [], "source_rows": []}
    offset = 0
    for c in range(n_sites):
        rows = np.flatnonzero(site == c)
        n = len(rows)
        if n < 2:
            raise ValueError(f"site {names[c]!r} of {dataset.name!r} has {n} row(s); a client needs at least 2")
        if meta.get("test") is not None:  # the dataset's own split
            rows, train, test = _split_fixed(rows, np.asarray(meta["test"], dtype=bool), names[c])
        else:
            rows, train, test = _split_site(rows, time, test_fraction, names[c], rng)
        x = dataset.x[rows].copy()
        if raw is not None and scale.any():
            x = x.astype(np.float64)
            x[:, scale] = standardize_with(raw[rows][:, scale], train)
        out["x"].append(x)
        out["y"].append(dataset.y[rows])
        out["source_rows"].append(rows)
        out["train_index"].append(offset + train)
        out["test_index"].append(offset + test)
        offset += n
    return out


def _split_site(rows, time, test_fraction, name, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, train, test)``: the site's rows (in time order when it has times) and its split positions.

    By time the test set is the last ``test_fraction`` (ties at the cut go to test); otherwise a seeded share."""
    n = len(rows)
    n_test = min(max(1, int(round(n * test_fraction))), n - 1)
    if time is None:
        order = rng.permutation(n)
        return rows, np.sort(order[n_test:]), np.sort(order[:n_test])
    rows = rows[np.argsort(time[rows], kind="stable")]
    cut = time[rows][n - n_test]
    is_test = time[rows] >= cut  # ties at the cut go to the test set: train strictly before test
    if is_test.all():
        raise ValueError(f"site {name!r}: all rows share one time; cannot split by time")
    return rows, np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _split_fixed(rows, is_test, name) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, train, test)`` of a site under the dataset's fixed split (``meta["test"]``)."""
    flags = is_test[rows]
    if flags.all() or not flags.any():
        missing = "training" if flags.all() else "test"
        raise ValueError(f"site {name!r}: the dataset's fixed split gives it no {missing} rows; a client needs both")
    return rows, np.flatnonzero(~flags), np.flatnonzero(flags)


def _site_federation(dataset, pooled, group, group_names, client_meta, key, seed, test_fraction,
                     split) -> Federation:
    """The sites' pooled rows as a :class:`Federation`, with ``source_rows`` and its one-line description."""
    n_sites = len(pooled["x"])
    fed = Federation(np.concatenate(pooled["x"]).astype(np.float32), np.concatenate(pooled["y"]),
                     pooled["train_index"], pooled["test_index"], group,
                     dataset.n_classes, dataset.task, dataset.kind, dataset.name, "natural", tuple(group_names),
                     params=dict(clients=n_sites, groups=len(group_names), seed=seed, test_fraction=test_fraction,
                                 split=split, group_by=key),
                     client_meta=client_meta)
    fed.source_rows = np.concatenate(pooled["source_rows"])
    sizes = fed.sizes
    fed.description = (f"{dataset.name} · natural · {n_sites} clients (one per site) in {len(group_names)} group"
                       f"{'s' if len(group_names) > 1 else ''} ({'; '.join(group_names)}) · "
                       f"{sizes.min()}–{sizes.max()} training samples per client"
                       f"{' · test = last ' + format(test_fraction, 'g') + ' in time' if split == 'time' else ''}"
                       f"{' · test = ' + dataset.meta.get('test_name', 'fixed rows') if split == 'fixed' else ''}")
    return fed


def standardize_with(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``x`` standardised with the mean and standard deviation of its rows ``train``
    (a constant column becomes 0)."""
    mean, std = x[train].mean(0), x[train].std(0)
    return (x - mean) / np.where(std > 0, std, 1.0)


# -- checks ---------------------------------------------------------------------------------
def _check_args(dataset, parts, clients, groups, test_fraction, samples_per_client, alpha,
                classes_per_client, removed_classes, noise, quantity_exponent, quantity_ratios):
    if int(clients) != clients or clients < 1:
        raise ValueError(f"clients must be a positive integer, got {clients}")
    grouped = any(p not in ("iid", "quantity_skew") for p in parts)
    if int(groups) != groups or groups < 1 or (grouped and groups > clients):
        raise ValueError(f"groups must be between 1 and clients ({clients}), got {groups}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if samples_per_client < 0:
        raise ValueError(f"samples_per_client must be >= 0 (0 = split the dataset), got {samples_per_client}")
    if 0 < samples_per_client < MIN_CLIENT_SAMPLES:
        raise ValueError(f"samples_per_client must be 0 or >= {MIN_CLIENT_SAMPLES}, got {samples_per_client}")
    if samples_per_client == 0 and len(dataset) < clients * MIN_CLIENT_SAMPLES:
        raise ValueError(
            f"impossible partition: {len(dataset)} samples of {dataset.name!r} cannot give {clients} clients "
            f"at least {MIN_CLIENT_SAMPLES} samples each; use fewer clients or set samples_per_client "
            f"to draw samples with reuse")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    k = dataset.n_classes
    if "shards" in parts and not 1 <= classes_per_client <= k:
        raise ValueError(f"classes_per_client must be between 1 and {k}, got {classes_per_client}")
    if "label_skew" in parts and not 0 <= removed_classes < k:
        raise ValueError(f"removed_classes must be between 0 (= classes // groups) and {k - 1}, got {removed_classes}")
    if "label_swap" in parts:
        if dataset.task != "classification":
            raise ValueError("scenario 'label_swap' needs a classification dataset")
        if groups > math.factorial(min(k, 10)):
            raise ValueError(f"label_swap: {k} classes allow only {math.factorial(k)} distinct label "
                             f"permutations, fewer than groups={groups}")
    if any(p in parts for p in ("dirichlet", "shards", "label_skew")) and dataset.task != "classification":
        raise ValueError(f"label-skew scenarios need a classification dataset; {dataset.name!r} is {dataset.task}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if not quantity_exponent > 0:
        raise ValueError(f"quantity_exponent must be > 0, got {quantity_exponent}")
    if any(not r > 0 for r in quantity_ratios):
        raise ValueError(f"quantity_ratios must all be > 0, got {list(quantity_ratios)}")


# -- sizes and sampling -------------------------------------------------------------------
def _client_sizes(n_total, clients, samples_per_client, skewed, exponent, ratios, rng) -> np.ndarray:
    per = samples_per_client or n_total // clients
    total = per * clients
    if not skewed:
        return np.full(clients, per, dtype=np.int64)
    if ratios:
        w = np.resize(np.asarray(ratios, dtype=float), clients)
    else:
        w = rng.pareto(exponent, clients) + 1.0  # Pareto (power-law) tail, minimum 1
    sizes = np.maximum(MIN_CLIENT_SAMPLES, np.floor(w / w.sum() * total)).astype(np.int64)
    while sizes.sum() > total:  # the floor at MIN_CLIENT_SAMPLES may overshoot: trim the largest
        sizes[np.argmax(sizes)] -= sizes.sum() - total
        sizes = np.maximum(sizes, MIN_CLIENT_SAMPLES)
    return sizes


def _class_proportions(partition, dataset, group, n_groups, alpha, classes_per_client, removed, rng):
    """Per-client class proportions (None for iid) and a name per group."""
    k = dataset.n_classes
    if partition == "iid":
        return None, ["iid"] * n_groups
    if partition == "dirichlet":
        p = rng.dirichlet(np.full(k, alpha), size=n_groups)
        names = [f"Dir({alpha:g}) draw {g}" for g in range(n_groups)]
    else:
        classes = rng.permutation(k)
        p = np.zeros((n_groups, k))
        names = []
        for g in range(n_groups):
            if partition == "shards":
                keep = classes[[(g * classes_per_client + j) % k for j in range(classes_per_client)]]
                p[g, keep] = 1.0
                names.append("classes " + ",".join(map(str, sorted(keep))))
            else:
                r = removed or max(1, k // n_groups)
                drop = classes[[(g * r + j) % k for j in range(r)]]
                p[g] = 1.0
                p[g, drop] = 0.0
                names.append("without " + ",".join(map(str, sorted(drop))))
        p /= p.sum(axis=1, keepdims=True)
    return p[group], names


def _draw(y, n_classes, sizes, proportions, reuse, rng) -> list[np.ndarray]:
    """Rows for each client: disjoint unless ``reuse``; class counts follow ``proportions``."""
    n = len(y)
    if proportions is None:
        pool = _Queue(np.arange(n), reuse, rng)
        return [pool.take(int(s)) for s in sizes]
    counts = np.stack([_round_counts(s * p) for s, p in zip(sizes, proportions)])
    supply = np.bincount(y, minlength=n_classes)
    if not reuse:  # shrink every client's share of an over-demanded class
        for j in range(n_classes):
            demand = counts[:, j].sum()
            if demand > supply[j]:
                counts[:, j] = np.floor(counts[:, j] * supply[j] / demand).astype(np.int64)
        short = np.flatnonzero(counts.sum(axis=1) < MIN_CLIENT_SAMPLES)
        if short.size:
            raise ValueError(
                f"impossible partition: clients {short.tolist()[:5]} would get fewer than {MIN_CLIENT_SAMPLES} "
                f"samples because their classes are shared by too many clients; use fewer clients, more "
                f"classes_per_client, or samples_per_client to draw with reuse")
    queues = [_Queue(np.flatnonzero(y == j), reuse, rng) for j in range(n_classes)]
    rows = []
    for c in range(len(sizes)):
        r = np.concatenate([queues[j].take(int(counts[c, j])) for j in range(n_classes)])
        rows.append(rng.permutation(r))
    return rows


def _round_counts(target: np.ndarray) -> np.ndarray:
    """Integers summing to round(sum(target)) by largest remainder."""
    base = np.floor(target).astype(np.int64)
    missing = int(round(target.sum())) - base.sum()
    if missing > 0:
        base[np.argsort(-(target - base), kind="stable")[:missing]] += 1
    return base


class _Queue:
    """Shuffled rows handed out without replacement; reshuffled when empty if ``reuse``."""

    def __init__(self, rows, reuse, rng):
        self.rows, self.reuse, self.rng = np.asarray(rows), reuse, rng
        self.order, self.pos = rng.permutation(self.rows), 0

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self.pos == len(self.order):
                if not self.reuse or len(self.rows) == 0:
                    raise ValueError("impossible partition: the dataset ran out of samples")
                self.order, self.pos = self.rng.permutation(self.rows), 0
            k = min(n, len(self.order) - self.pos)
            out.append(self.order[self.pos:self.pos + k])
            self.pos += k
            n -= k
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


# -- transforms ---------------------------------------------------------------------------
def _rotate(x: np.ndarray, g: int, n_groups: int, angle: float = 0.0) -> np.ndarray:
    """Group ``g``'s images: rotated by ``g * angle`` degrees (``angle`` 0: 90° steps for up to 4
    groups, else 360/groups), bilinear, corners filled with 0."""
    if not angle and n_groups <= 4:
        return np.rot90(x, k=g, axes=(1, 2)).copy()
    from scipy.ndimage import rotate

    degrees = g * angle if angle else 360.0 * g / n_groups
    return rotate(x, degrees, axes=(1, 2), reshape=False, order=1, mode="constant")


def _label_cycles(k: int, n_groups: int, moved: int, rng) -> list[np.ndarray]:
    """Distinct label permutations, identity first, each other one a cycle over ``moved`` random
    classes (Ghosh et al.'s label swap made gradual: the other labels stay)."""
    perms, seen = [np.arange(k)], {tuple(range(k))}
    for _ in range(1000 * n_groups):
        if len(perms) == n_groups:
            return perms
        chosen = rng.choice(k, size=moved, replace=False)
        p = np.arange(k)
        p[chosen] = np.roll(chosen, 1)
        if tuple(p) not in seen:
            seen.add(tuple(p))
            perms.append(p)
    raise ValueError(f"label_swap: swapped_labels={moved} of {k} classes gives fewer than groups={n_groups} "
                     f"distinct permutations; move more labels or plant fewer groups")


def _check_knobs(dataset, parts, groups, rotation_angle, swapped_labels):
    """The difficulty knobs: only with their scenario part, and in range."""
    if rotation_angle:
        if "rotation" not in parts or dataset.kind != "image":
            raise ValueError(f"rotation_angle={rotation_angle:g} applies to scenario 'rotation' on an image dataset "
                             f"(tabular rotation is a feature permutation); set it to 0 here")
        if not 0 < rotation_angle <= 360 / max(groups - 1, 1):
            raise ValueError(f"rotation_angle must be in (0, {360 / max(groups - 1, 1):g}] degrees for groups={groups} "
                             f"(group g is rotated by g x angle), got {rotation_angle:g}")
    if swapped_labels:
        k = dataset.n_classes
        if "label_swap" not in parts:
            raise ValueError(f"swapped_labels={swapped_labels} applies to scenario 'label_swap'; set it to 0 here")
        if not 2 <= swapped_labels <= k:
            raise ValueError(f"swapped_labels must be 0 (all labels) or in 2..{k} (the classes of "
                             f"{dataset.name!r}), got {swapped_labels}")


def _label_perms(k: int, n_groups: int, rng) -> list[np.ndarray]:
    """Distinct label permutations, identity first."""
    perms = [np.arange(k)]
    seen = {tuple(perms[0])}
    if math.factorial(min(k, 10)) <= 4 * n_groups:  # few permutations: enumerate them
        pool = [np.array(p) for p in itertools.permutations(range(k)) if p not in seen]
        order = rng.permutation(len(pool))
        return perms + [pool[i] for i in order[:n_groups - 1]]
    while len(perms) < n_groups:
        p = rng.permutation(k)
        if tuple(p) not in seen:
            seen.add(tuple(p))
            perms.append(p)
    return perms


def _skews(dataset: Dataset, skew: str) -> tuple:
    if not skew:
        return FEATURE_SKEWS[dataset.kind][:4]
    kinds = tuple(s.strip() for s in skew.split(","))
    for s in kinds:
        if s not in FEATURE_SKEWS[dataset.kind]:
            raise ValueError(f"unknown feature skew {s!r} for {dataset.kind} data; choose from: "
                             f"{', '.join(FEATURE_SKEWS[dataset.kind])}")
    return kinds


def _feature_skew(x, kind, g, n_groups, noise, rng):
    if kind == "none":
        return x
    if kind == "noise":
        return (x + rng.normal(0.0, noise, size=x.shape)).astype(np.float32)
    if kind == "scale":
        return x * np.float32(1.0 + 2.0 * noise)
    if kind == "offset":
        return x + np.float32(2.0 * noise)
    if kind == "inversion":
        return 1.0 - x
    from scipy.ndimage import grey_dilation, grey_erosion

    op = grey_erosion if kind == "erosion" else grey_dilation
    return op(x, size=(1, 2, 2, 1)).astype(np.float32)


def _transform_names(part, dataset, n_groups, skew, rotation_angle=0.0, swapped_labels=0):
    if part == "rotation":
        if dataset.kind == "tabular":
            return ["features as-is"] + [f"features permuted ({g})" for g in range(1, n_groups)]
        step = rotation_angle or (90 if n_groups <= 4 else 360 / n_groups)
        return [f"rotated {step * g:g}°" for g in range(n_groups)]
    if part == "label_swap":
        moved = f"{swapped_labels} labels cycled" if swapped_labels else "labels permuted"
        return ["labels as-is"] + [f"{moved} ({g})" for g in range(1, n_groups)]
    kinds = _skews(dataset, skew)
    return [kinds[g % len(kinds)] for g in range(n_groups)]


def _join_names(a, b):
    return [y if x == "iid" else f"{x}, {y}" for x, y in zip(a, b)]
