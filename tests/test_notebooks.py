"""Smoke runs of the teaching notebooks with papermill, at tiny parameters.

Each notebook must run headless from top to bottom (widgets switched on, to run that code
too), write its figures and tables into ``out_dir``, and be committed clean: no outputs,
no execution counts, exactly one ``parameters`` cell with documented, typed parameters.
"""
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Tiny parameters per notebook: a few clients and rounds, seconds of training.
TINY = {
    "00_setup_and_scenarios": dict(clients=8, groups=2, per_client=3),
    "01_fedavg_from_scratch": dict(clients=4, rounds=2, local_epochs=1),
    "02_heterogeneity_and_oracle_gap": dict(clients=8, groups=2, rounds=2, local_epochs=1,
                                            scenarios=["rotation", "label_swap"],
                                            methods=["fedavg", "oracle", "local"]),
    # warm-up 3 and eps2 = 0.4 make Sattler split once, in round 4, at this size
    "03_sattler_cfl": dict(clients=8, groups=2, rounds=6, local_epochs=1, warmup_rounds=3, eps2=0.4,
                           eps2_values=[0.4, 1.6]),
    "04_ifca": dict(clients=8, groups=2, rounds=3, local_epochs=1, seeds=[0, 1], restarts_values=[1, 2]),
    # one scenario: sections 2-5 and 6 then share it, and the runs of sections 2-5 are reused
    "05_one_shot_and_warmup": dict(clients=8, groups=2, rounds=3, local_epochs=1, warmup_rounds=1,
                                   scenarios=["rotation+quantity_skew"],
                                   methods=["fedavg", "flhc", "fedclust", "ocfl", "oracle"]),
    "06_pacfl": dict(clients=8, groups=2, rounds=2, local_epochs=1, scenarios=["shards", "label_swap"],
                     subspace_dims=[1, 3]),
    "07_cornflqs": dict(clients=8, groups=2, rounds=4, local_epochs=1,
                        scenarios=["rotation+quantity_skew", "label_swap"], methods=["fedavg", "cornflqs", "oracle"]),
    "08_benchmark_of_clustering": dict(clients=8, groups=2, rounds=2, local_epochs=1,
                                       methods=["fedavg", "pacfl", "oracle"], scenarios=["shards", "label_swap"],
                                       seeds=[0], workers=1, settings={"participation": 0.75, "min_silhouette": 0.2}),
    "09_medical_heart_disease": dict(methods=["fedavg", "local", "metadata", "flhc"], seeds=[0, 1], rounds=2,
                                     local_epochs=1, restarts=1, sattler_warmup=1, workers=1, flamby_seeds=[0],
                                     tcga_methods=["fedavg", "local", "pacfl"]),
    "10_environmental_air_quality": dict(methods=["fedavg", "oracle", "flhc"], seeds=[0], rounds=2, local_epochs=1,
                                         restarts=1, sattler_warmup=1, workers=1),
    "11_explaining_clusters": dict(clients=8, groups=2, rounds=2, local_epochs=1, probes=3, num_samples=50,
                                   explainer_seeds=2, scenarios=["rotation", "label_swap"]),
    "12_deploying_with_flower": dict(rounds=2, local_epochs=1),
    "13_realistic_federations": dict(clients=8, groups=2, rounds=4, local_epochs=1, restarts=1, holdout_clients=2,
                                     arrival_round=2, drift_round=2),
    "14_more_real_federations": dict(methods=["fedavg", "local", "oracle", "flhc"], seeds=[0], rounds=2, local_epochs=1,
                                     physionet_rounds=2, restarts=1, workers=1),
}
# Notebooks on the real datasets: their files come from the offline copies (data/README.md).
REAL_DATA = ("09_medical_heart_disease", "10_environmental_air_quality", "11_explaining_clusters",
             "12_deploying_with_flower", "14_more_real_federations")
OFFLINE_DIRS = ROOT.parent / "shared" / "data"

# What each notebook writes into out_dir: figures (as .pdf and .png) and tables.
FIGURES = {
    "00_setup_and_scenarios": ["samples_iid", "labels_iid", "labels_dirichlet", "labels_shards", "labels_label_skew",
                               "samples_rotation", "samples_label_swap", "samples_feature_skew",
                               "sizes_quantity_skew", "sizes_composition", "samples_composition",
                               "samples_breast_cancer_feature_skew", "samples_breast_cancer_rotation"],
    "01_fedavg_from_scratch": ["accuracy_iid", "per_client_iid"],
    "02_heterogeneity_and_oracle_gap": [f"{kind}_{s}" for s in TINY["02_heterogeneity_and_oracle_gap"]["scenarios"]
                                        for kind in ("accuracy", "per_client")],
    "03_sattler_cfl": ["criteria", "similarity_first_split", "assignment", "accuracy", "assignment_other"],
    "04_ifca": ["loss_matrices", "assignment", "accuracy"],
    "05_one_shot_and_warmup": ["flhc_dendrogram", "flhc_assignment", "kmeans_assignment", "fedclust_proximity",
                               "update_similarity_round1", "ocfl_temperature", "ocfl_assignment", "ari", "accuracy",
                               "sizes_last_scenario", "fedclust_proximity_last_scenario",
                               "update_similarity_last_scenario", "ari_over_rounds", "accuracy_curves"],
    "06_pacfl": ["bases_shards"] + [f"{kind}_{s}" for s in TINY["06_pacfl"]["scenarios"]
                                    for kind in ("angles", "dendrogram", "accuracy")],
    "07_cornflqs": ["sizes", "server_vs_clients", "assignment", "accuracy"],
    "08_benchmark_of_clustering": ["ari_heatmap", "accuracy_heatmap", "ari_over_rounds"],
    "09_medical_heart_disease": ["hospital_features", "accuracy", "co_clustering", "per_hospital", "sattler_criteria"],
    "10_environmental_air_quality": ["stations_pm25", "ari_vs_area", "assignments", "per_station", "worst_stations",
                                     "sattler_criteria"],
    "11_explaining_clusters": [f"{kind}_{s}" for s in TINY["11_explaining_clusters"]["scenarios"]
                               for kind in ("group_importance", "threshold_tree", "contingency", "importance",
                                            "class_maps", "rank_correlation", "agreement", "faithfulness",
                                            "divergence")]
                              + ["aligned_correlation_rotation", "heart_group_importance", "heart_importance",
                                 "heart_divergence"],
    "12_deploying_with_flower": ["per_hospital"],
    "13_realistic_federations": ["participation_accuracy", "drift_ari", "drift_assignment"],
    "14_more_real_federations": ["ari_vs_references", "worst_clients", "saps_vs_models"]
                                + [f"{kind}_{f}" for f in ("pm25_cities", "parkinsons", "physionet2012_subsites")
                                   for kind in ("assignments", "per_client")],
}
TABLES = {
    "00_setup_and_scenarios": ["scenarios.csv"],
    "01_fedavg_from_scratch": ["fedavg_match.csv", "results.csv"],
    "02_heterogeneity_and_oracle_gap": ["results.csv", "accuracy.csv"],
    "03_sattler_cfl": ["results.csv", "eps2.csv"],
    "04_ifca": ["results.csv", "seeds_restarts.csv"],
    "05_one_shot_and_warmup": ["results.csv"],
    "06_pacfl": ["angles.csv", "results.csv", "subspace_dim.csv"],
    "07_cornflqs": ["results.csv"],
    "08_benchmark_of_clustering": ["results.csv", "ari_per_round.csv", "k_given_vs_unknown.csv"],
    "09_medical_heart_disease": ["hospitals.csv", "features.csv", "results.csv", "per_client.csv", "partitions.csv",
                                 "per_hospital.csv", "flamby.csv", "tcga.csv"],
    "10_environmental_air_quality": ["stations.csv", "results.csv", "per_client.csv", "ari.csv", "per_station.csv",
                                     "worst_stations.csv"],
    "11_explaining_clusters": ["membership.csv", "agreement.csv", "contrast.csv", "divergence.csv",
                               "heart_top_features.csv", "heart_contrast.csv"],
    "12_deploying_with_flower": ["comparison.csv", "per_hospital.csv"],
    "13_realistic_federations": ["participation.csv", "unseen.csv", "late.csv", "drift.csv"],
    "14_more_real_federations": ["federations.csv", "results.csv", "per_client.csv", "ari.csv", "clusters.csv",
                                 "scores.csv", "worst_clients.csv", "saps.csv"],
}


PLACEHOLDERS = re.compile(r"\b(TBD|TODO|FIXME|XXX|to be (filled|written|done))\b", re.IGNORECASE)
MIN_NUMBERS = 3  # a closing cell quotes at least this many numbers the reader should see


def closing_cell_problem(source: str) -> str | None:
    """What is wrong with a notebook's closing cell, or None: it must be headed 'What you should
    have seen', hold no placeholder and quote the numbers the reader should see."""
    heading, _, body = source.partition("\n")
    if "what you should have seen" not in heading.lower():
        return f"the closing cell must start with '## What you should have seen', starts {heading[:40]!r}"
    if match := PLACEHOLDERS.search(body):
        return f"the closing cell holds the placeholder {match.group(0)!r}, not the numbers to expect"
    numbers = re.findall(r"\d+(?:[.,]\d+)?", re.sub(r"\b\d\d\b ·", "", body))  # not "04 ·" notebook names
    if len(numbers) < MIN_NUMBERS:
        return f"the closing cell quotes {len(numbers)} number(s); say the numbers the reader should see"
    return None


@pytest.mark.parametrize("source, problem", [
    ("## What you should have seen\n\nTBD", "placeholder 'TBD'"),
    ("## What you should have seen\n\nAccuracy 0.94, ARI 1.0, 4 clusters. TODO: more", "placeholder 'TODO'"),
    ("## What you should have seen\n\nThe clusters match the groups. Next: **04 · IFCA**.", "quotes 0 number"),
    ("## Summary\n\nAccuracy 0.94, ARI 1.0, 4 clusters.", "must start with"),
    ("## What you should have seen\n\nAccuracy 0.94 (worst 10 %: 0.86), ARI 1.0, 4 clusters.", None),
])
def test_the_closing_cell_check_refuses_placeholders_and_cells_without_numbers(source, problem):
    found = closing_cell_problem(source)
    assert found is None if problem is None else problem in found


def test_every_notebook_is_covered():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
    assert {nb.stem for nb in NOTEBOOKS} == set(TINY) == set(FIGURES) == set(TABLES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    import papermill

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, \
            f"{path.name}: commit notebooks without outputs (cell starting {cell.source[:40]!r})"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', expected exactly one"
    assert tagged[0] is code[0], f"{path.name}: the 'parameters' cell must be the first code cell"
    assert nb.cells[-1].cell_type == "markdown", f"{path.name}: the last cell must be 'What you should have seen'"
    problem = closing_cell_problem(nb.cells[-1].source)
    assert problem is None, f"{path.name}: {problem}"

    params = papermill.inspect_notebook(str(path))
    for name in ("out_dir", "interactive", *TINY[path.stem]):
        assert name in params, f"{path.name}: no parameter {name!r}; it has {sorted(params)}"
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{path.name}: parameter {name!r} has no type annotation"
        assert p["help"], f"{path.name}: parameter {name!r} has no '# comment' saying what it is"
    assert params["interactive"]["default"] == "False", "widgets must be off by default"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    import papermill

    # The kernel must pick Jupyter's inline backend, as in JupyterLab; an inherited
    # MPLBACKEND=Agg would make the interactive views show nothing.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    if path.stem in REAL_DATA and not os.environ.get("CFLKIT_OFFLINE_DIRS"):
        monkeypatch.setenv("CFLKIT_OFFLINE_DIRS", str(OFFLINE_DIRS))

    out = tmp_path / "out"
    executed = tmp_path / path.name
    papermill.execute_notebook(str(path), str(executed), kernel_name="python3", cwd=str(tmp_path),
                               parameters={**TINY[path.stem], "out_dir": str(out), "interactive": True},
                               progress_bar=False, execution_timeout=300)

    for name in FIGURES[path.stem]:
        pdf, png = out / f"{name}.pdf", out / f"{name}.png"
        assert pdf.read_bytes()[:5] == b"%PDF-", f"{pdf.name} missing or not a PDF"
        assert b"/Type3" not in pdf.read_bytes(), f"{pdf.name} has Type 3 fonts; pdf.fonttype must be 42"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png.name} missing or not a PNG"
    for name in TABLES[path.stem]:
        assert len(pd.read_csv(out / name)) > 0, f"{name} is empty"
    assert not [p for p in out.glob(".*") if p.name != ".cflkit-output.json"], "temporary files left behind in out_dir"
    assert not (tmp_path / "runs").exists(), "the notebook wrote outside out_dir"
    _check_results(path.stem, out, nbformat.read(executed, as_version=4))


def _text(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _check_results(stem: str, out: Path, executed):
    tiny = TINY[stem]
    if stem.startswith("00"):
        # The kernel named "python3" must be this interpreter (the project's venv), not the system's.
        assert f"at {sys.executable}\n" in _text(executed), \
            f"the notebook kernel is not {sys.executable}: {_text(executed).splitlines()[:1]}"
        scenarios = pd.read_csv(out / "scenarios.csv")
        assert len(scenarios) == 9
        assert set(scenarios.loc[scenarios.scenario.isin(["iid", "quantity_skew"]), "groups"]) == {1}
        assert set(scenarios.loc[~scenarios.scenario.isin(["iid", "quantity_skew"]), "groups"]) == {tiny["groups"]}
    elif stem.startswith("01"):
        match = pd.read_csv(out / "fedavg_match.csv")
        assert len(match) == tiny["rounds"] + 1
        assert (match["from scratch"] - match["cflkit.run"]).abs().max() < 1e-6, "hand-written FedAvg != cflkit.run"
        results = pd.read_csv(out / "results.csv", index_col=0)
        assert set(results.index) == {"fedavg", "local", "centralized"}
        assert results.loc["fedavg", "bytes_total"] > 0 and results.loc["local", "bytes_total"] == 0
    elif stem.startswith("02"):
        results = pd.read_csv(out / "results.csv")
        assert len(results) == len(tiny["scenarios"]) * len(tiny["methods"])
        oracle = results[results.method == "oracle"]
        assert (oracle["ari"] == 1.0).all() and (oracle["n_clusters"] == tiny["groups"]).all()
        accuracy = pd.read_csv(out / "accuracy.csv", index_col=0)
        assert list(accuracy.index) == tiny["scenarios"]
        gap = accuracy["oracle"] - accuracy["fedavg"]
        assert (accuracy["oracle gap"] - gap).abs().max() < 1e-12
    elif stem.startswith("03"):
        results = pd.read_csv(out / "results.csv", index_col=0)
        assert list(results.index) == ["fedavg", "sattler", "oracle"]
        assert results.loc["sattler", "ari"] == 1.0 and results.loc["sattler", "n_clusters"] == tiny["groups"], \
            "at the tiny setting Sattler's CFL splits once, into the planted groups"
        eps2 = pd.read_csv(out / "eps2.csv")
        assert list(eps2["eps2"]) == tiny["eps2_values"]
        assert eps2.set_index("eps2").loc[1.6, "n_clusters"] == 1, "no client update reaches eps2 = 1.6: no split"
        assert "splits in rounds [4]" in _text(executed)
    elif stem.startswith("04"):
        results = pd.read_csv(out / "results.csv", index_col=0)
        assert list(results.index) == ["fedavg", "ifca", "oracle"]
        k = tiny["groups"]  # IFCA: K models down, one up per client and round; FedAvg: one each way
        assert results.loc["ifca", "bytes_total"] * 2 == results.loc["fedavg", "bytes_total"] * (k + 1)
        assert 1 <= results.loc["ifca", "n_clusters"] <= k
        sensitivity = pd.read_csv(out / "seeds_restarts.csv")
        assert len(sensitivity) == len(tiny["seeds"]) * len(tiny["restarts_values"])
        assert sensitivity["ari"].between(-1, 1).all()
    elif stem.startswith("05"):
        results = pd.read_csv(out / "results.csv")
        assert len(results) == len(tiny["scenarios"]) * len(tiny["methods"])
        assert (results.loc[results.method == "oracle", "ari"] == 1.0).all()
        assert (results.loc[results.method == "fedavg", "n_clusters"] == 1).all()
        assert results["n_clusters"].between(1, tiny["clients"]).all()
    elif stem.startswith("06"):
        results = pd.read_csv(out / "results.csv").set_index(["scenario", "method"])
        assert results.loc[("shards", "pacfl"), "ari"] == 1.0, "PACFL recovers disjoint-class shards exactly"
        assert results.loc[("label_swap", "pacfl"), "ari"] < 0.5, "PACFL cannot see label swap"
        angles = pd.read_csv(out / "angles.csv", index_col=0)
        assert angles.loc["shards", "ratio"] > 2 and angles.loc["label_swap", "ratio"] < 1.5
        sweep = pd.read_csv(out / "subspace_dim.csv")
        assert len(sweep) == len(tiny["scenarios"]) * len(tiny["subspace_dims"])
    elif stem.startswith("07"):
        results = pd.read_csv(out / "results.csv")
        assert len(results) == len(tiny["scenarios"]) * len(tiny["methods"])
        cornflqs = results[results.method == "cornflqs"]
        assert cornflqs["n_clusters"].between(1, tiny["groups"]).all()
        fedavg = results[results.method == "fedavg"]["bytes_total"].to_numpy()
        assert (cornflqs["bytes_total"].to_numpy() > fedavg).all(), "clients download K models in CORN rounds"
    elif stem.startswith("08"):
        results = pd.read_csv(out / "results.csv")
        takes_k = [m for m in tiny["methods"] if m not in ("fedavg", "oracle")]  # run once per K setting
        assert len(results) == (len(tiny["methods"]) + len(takes_k)) * len(tiny["scenarios"]) * len(tiny["seeds"])
        assert results["error"].isna().all(), results["error"].dropna().tolist()
        results = results.set_index(["method", "scenario"])
        assert results.loc[("pacfl", "shards"), "ari"].min() == 1.0
        assert (results.loc["oracle", "ari"] == 1.0).all() and (results.loc["fedavg", "ari"] == 0.0).all()
        per_round = pd.read_csv(out / "ari_per_round.csv")
        assert len(per_round) == len(results) * (tiny["rounds"] + 1)
        assert len(list((out / "cells").iterdir())) == len(results), "one run directory per cell"
        # K given and K unknown: pacfl ran with clusters=groups and clusters=auto, fedavg and the oracle once
        assert sorted(results.loc["pacfl", "clusters"].unique()) == ["auto", "groups"]
        assert results.loc["fedavg", "clusters"].isna().all() and len(results.loc["oracle"]) == len(tiny["scenarios"])
        k_table = pd.read_csv(out / "k_given_vs_unknown.csv", index_col=0)
        assert list(k_table.index) == tiny["methods"]
        assert k_table.loc["oracle", "ari (K given)"] == k_table.loc["oracle", "ari (K unknown)"] == 1.0
    elif stem.startswith("09"):
        hospitals = pd.read_csv(out / "hospitals.csv", index_col=0)
        assert list(hospitals["kept"]) == [303, 261, 46, 130], "FLamby preprocessing keeps 740 patients"
        assert list(hospitals["positive rate (kept)"].round(2)) == [0.46, 0.38, 0.98, 0.78]
        assert pd.read_csv(out / "features.csv", index_col=0).loc["Switzerland", "chol = 0"] == 1.0
        results = pd.read_csv(out / "results.csv")
        assert len(results) == len(tiny["methods"]) * len(tiny["seeds"])
        assert results["error"].isna().all(), results["error"].dropna().tolist()
        per_hospital = pd.read_csv(out / "per_hospital.csv", index_col=0)
        assert list(per_hospital.index) == [*tiny["methods"], "majority class"]
        assert list(per_hospital.columns) == ["Cleveland", "Hungarian", "Switzerland", "VA Long Beach"]
        assert per_hospital.stack().between(0, 1).all()
        partitions = pd.read_csv(out / "partitions.csv").set_index("method")
        assert partitions.loc["fedavg", "partition"] == "Cleveland+Hungarian+Switzerland+VA Long Beach"
        tcga = pd.read_csv(out / "tcga.csv").set_index("method")
        assert list(tcga.index) == ["centralized", "fedavg", "local", "pacfl"], "FLamby's two protocols, then the rest"
        assert tcga[["pooled c_index", "c_index_mean"]].stack().between(0, 1).all()
        assert list(tcga["n_clusters"]) == [1, 1, 6, 2]
        assert tcga.loc["local", "clusters"].count("|") == 5 and tcga.loc["fedavg", "clusters"].count(", ") == 5
        assert partitions.loc["local", "partition"] == "Cleveland | Hungarian | Switzerland | VA Long Beach"
        assert partitions.loc["metadata", "partition"] == "Cleveland+VA Long Beach | Hungarian | Switzerland", \
            "metadata groups by country: the two American hospitals together"
        assert (partitions.groupby("method")["seeds"].sum() == len(tiny["seeds"])).all()
    elif stem.startswith("10"):
        stations = pd.read_csv(out / "stations.csv", index_col=0)
        assert len(stations) == 12 and (stations["area"] == "urban").sum() == 8
        results = pd.read_csv(out / "results.csv").set_index("method")
        assert len(results) == len(tiny["methods"]) * len(tiny["seeds"])
        assert results["error"].isna().all()
        assert (results.loc["oracle", "ari"] == 1.0).all(), "the oracle groups by the metadata: ARI 1 against it"
        assert (results.loc["fedavg", "ari"] == 0.0).all() and (results.loc["fedavg", "n_clusters"] == 1).all()
        assert (results["rmse_worst10"] >= results["rmse_mean"]).all() and (results["rmse_mean"] > 0).all()
        per_station = pd.read_csv(out / "per_station.csv", index_col=0)
        assert per_station.shape == (12, len(tiny["methods"])), "one row per station, one column per method"
        assert list(per_station.columns) == tiny["methods"]
        per_client = pd.read_csv(out / "per_client.csv")
        mean_rmse = per_client.groupby(["method", "seed"])["rmse"].mean().groupby("method").mean() * 100
        assert (per_station.mean() - mean_rmse.loc[per_station.columns]).abs().max() < 1e-6, "per_station is x100"
        worst = pd.read_csv(out / "worst_stations.csv", index_col=0)
        assert list(worst.index) == tiny["methods"]
    elif stem.startswith("11"):
        contrast = pd.read_csv(out / "contrast.csv", index_col=0)
        assert list(contrast.index) == tiny["scenarios"] and (contrast["contrast_probes"] == tiny["probes"]).all()
        assert contrast["rank_correlation_mean"].between(-1, 1).all() and contrast["agreement_mean"].between(0, 1).all()
        assert contrast["topk_stability_mean"].between(0, 1).all(), "two LIME seeds: top-k Jaccard is defined"
        assert contrast.loc["rotation", "aligned_class_correlation_mean"] >= -1, "rotation: maps rotated back"
        agreement = pd.read_csv(out / "agreement.csv")
        assert set(agreement["scenario"]) == set(tiny["scenarios"])
        assert (agreement.loc[agreement.factor == "planted", "ari"] == 1.0).all(), "the oracle finds the planted groups"
        membership = pd.read_csv(out / "membership.csv", index_col=0)
        assert membership["fidelity"].between(0, 1).all() and membership["baseline_fidelity"].between(0, 1).all()
        data_only = membership[membership["descriptors"] == "data (T1)"]
        assert list(data_only.index) == tiny["scenarios"]
        assert not data_only.loc["label_swap", "explained"], "label swap: no data summary separates the groups"
        divergence = pd.read_csv(out / "divergence.csv")
        assert set(divergence["pair"]) == {"0-1", "0-global", "1-global"}, "two groups: one pair, two to the global"
        assert (divergence[["cosine_distance", "l2"]] >= 0).all().all()
        assert divergence["layer"].iloc[0] == "0:Dense/kernel" and "all" in set(divergence["layer"])
        top = pd.read_csv(out / "heart_top_features.csv", index_col=0)
        assert list(top.columns) == ["cluster 0", "cluster 1"] and len(top) == 5
        assert not top.stack().str.match(r"x\d+$").any(), "heart-disease features are named, not x0, x1, ..."
        assert (out / "heart_report" / "report.md").exists() and (out / "heart_report" / "quality.json").exists()
    elif stem.startswith("12"):
        comparison = pd.read_csv(out / "comparison.csv", index_col=0)
        assert list(comparison.index) == ["in-process", "simulation", "deployed"]
        assert comparison["same assignments"].all(), "Flower runs the method unchanged: same clusters every round"
        assert comparison["max |accuracy gap|"].max() < 1e-6 and (comparison["dropouts"] == 0).all()
        per_hospital = pd.read_csv(out / "per_hospital.csv", index_col=0)
        assert per_hospital.shape == (3, 4) and per_hospital.stack().between(0, 1).all()
        assert (out / "deployed" / "flower_events.csv").exists() and (out / "deployed" / "summary.json").exists()
        assert "processes left running: []" in _text(executed), "the notebook must stop the processes it started"
    elif stem.startswith("13"):
        sampled = pd.read_csv(out / "participation.csv")
        assert len(sampled) == 12 and (sampled.groupby("method")["MB_total"].agg(lambda v: v.iloc[1] < v.iloc[0])).all()
        unseen = pd.read_csv(out / "unseen.csv", index_col=0)
        assert unseen.loc["oracle", "unseen_matched"] == 1.0 and unseen.loc["fedavg", "unseen_matched"] == 1.0
        late = pd.read_csv(out / "late.csv", index_col=0)
        assert (late["late_clients"] == round(0.25 * tiny["clients"])).all() and late.loc["oracle", "late_matched"] == 1
        drift = pd.read_csv(out / "drift.csv", index_col=0)
        assert drift.loc["oracle", "ari_after_drift"] == 1.0 and drift.loc["oracle", "rounds_to_recover"] == 0
    elif stem.startswith("14"):
        federations = pd.read_csv(out / "federations.csv", index_col=0)
        assert federations["clients"].to_dict() == {"pm25_cities": 16, "parkinsons": 42, "physionet2012_subsites": 16,
                                                    "physionet2012": 4}
        results = pd.read_csv(out / "results.csv")
        assert results["error"].isna().all(), results["error"].dropna().tolist()
        runs = results.groupby("federation")["method"].agg(list).to_dict()
        assert runs["pm25_cities"] == runs["parkinsons"] == runs["physionet2012_subsites"] == tiny["methods"]
        assert runs["physionet2012"] == ["fedavg", "local", "flhc"], "no oracle on one group, no ifca from zeros"
        def rows(federation, method):
            return results[(results["federation"] == federation) & (results["method"] == method)]

        for federation, first in (("pm25_cities", "city"), ("parkinsons", "age_band"),
                                  ("physionet2012_subsites", "icu_type")):
            oracle = rows(federation, "oracle")
            assert oracle[f"ari_{first}"].eq(1.0).all() and oracle[f"ari_{first}"].eq(oracle["ari"]).all(), \
                "the oracle groups by the first reference, the federation's ground truth"
            assert rows(federation, "fedavg")[f"ari_{first}"].eq(0.0).all()
        assert (rows("pm25_cities", "oracle")["ari_region"] - 0.326).abs().max() < 0.01, "5 cities vs north / south"
        pm25 = results[results["federation"] == "pm25_cities"]
        assert (pm25["score_mean"] - pm25["rmse_mean"] * 100).abs().max() < 1e-9, "pm25 scores in µg/m³"
        icu = results[results["federation"] == "physionet2012_subsites"]
        assert icu["score_mean"].eq(icu["auroc_mean"]).all() and icu["ari_sex"].isna().all()
        assert results["score_fedavg_worst"].notna().all()
        worst = pd.read_csv(out / "worst_clients.csv").set_index(["federation", "method"])
        assert (worst.xs("fedavg", level="method")["gain vs fedavg"] == 0).all()
        assert worst.loc[("parkinsons", "fedavg"), "worst clients"].count(",") == 4, "10 % of 42 patients: 5"
        saps = pd.read_csv(out / "saps.csv", index_col=0)
        assert round(saps.loc["pooled", "SAPS-I AUROC"], 3) == 0.671, "docs/physionet2012.md: SAPS-I AUROC on set B"
        assert saps.loc["mean over ICU types", ["fedavg", "local", "flhc"]].between(0.5, 1).all()
        sizes = pd.read_csv(out / "clusters.csv").groupby(["federation", "method"])["clients"].sum()
        assert list(sizes) == list(federations["clients"].reindex(sizes.index.get_level_values(0))), \
            "every client in exactly one cluster"
    assert not re.search(r"Traceback|Error:", _text(executed)), "a cell printed an error"
    # interactive=True: the widgets' outputs live in the notebook's widget state.
    widgets = json.dumps(executed.metadata.get("widgets", {}))
    assert '"ename"' not in widgets, "the interactive view raised an error"
    assert "image/png" in widgets, "the interactive view showed no figure"
