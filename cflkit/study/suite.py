"""The statistics of a benchmark suite's finished runs (``experiments/suite-*.yaml``).

Every finished run of the suite's batch directory holds notebook 08's ``results.csv``;
:func:`suite_results` joins them (with the run's dataset) and labels the K setting of
each cell (:func:`cflkit.study.compare.k_settings`); :func:`suite_statistics` writes, per
setting, Demšar's comparison over the blocks dataset × scenario × seed
(:mod:`cflkit.study.stats`, the oracle left out: it is handed the groups): the summary
table of ARI and accuracy, the Friedman tests, the Wilcoxon–Holm p-values and the
critical-difference diagram of the ARI ranks.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.results import write_text_atomic


def suite_results(batch_dir) -> pd.DataFrame:
    """Every finished run's ``results.csv`` under ``batch_dir`` (``cflkit batch``'s
    ``runs/batch/<name>/``), with ``dataset`` and ``k``; failed cells refused."""
    from .compare import CANNOT_CHOOSE_K, k_settings

    batch_dir = Path(batch_dir)
    tables = []
    for params_file in sorted(batch_dir.glob("*/params.json")):
        run = params_file.parent
        if not (run / "out" / "results.csv").exists():
            continue
        params = json.loads(params_file.read_text())
        t = pd.read_csv(run / "out" / "results.csv")
        t["dataset"] = params.get("dataset", "digits")
        tables.append(t)
    if not tables:
        raise ValueError(f"no finished run with out/results.csv under {batch_dir}; run `cflkit batch` first")
    results = pd.concat(tables, ignore_index=True)
    errors = results["error"].astype(object).fillna("").astype(str)
    failed = (errors != "") & ~errors.str.contains(CANNOT_CHOOSE_K, regex=False)  # refusals: no K-unknown cell
    if failed.any():
        raise ValueError(f"{failed.sum()} cells failed, e.g. {errors[failed].iloc[0]}")
    return k_settings(results)


def suite_statistics(results: pd.DataFrame, out_dir) -> dict:
    """Per K setting: ``summary_<k>_<score>.csv``, ``wilcoxon_holm_<k>.csv``, ``cd_<k>.pdf``;
    returns (and writes as ``statistics.json``) the Friedman tests, the CD and the ranking."""
    import matplotlib.pyplot as plt

    from . import stats

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for k, part in results.groupby("k", sort=False):
        ranked = part[part["method"] != "oracle"]
        entry = {}
        for score in ("ari", "accuracy_mean"):
            table = stats.summary_table(ranked, score, reference="fedavg")
            write_text_atomic(out / f"summary_{k}_{score}.csv", table.to_csv(index=False))
            fr = stats.friedman(ranked, score)
            entry[score] = {"friedman_chi2": fr.chi2, "p": fr.p_chi2, "iman_davenport_f": fr.f, "p_f": fr.p_f,
                            "blocks": fr.n_blocks, "methods": fr.n_methods,
                            "ranking": table[["method", "mean_rank", "mean"]].round(4).to_dict("records")}
        p = stats.posthoc(ranked, "ari", test="wilcoxon_holm")
        write_text_atomic(out / f"wilcoxon_holm_{k}.csv", p.to_csv())
        cd = stats.critical_difference(entry["ari"]["methods"], entry["ari"]["blocks"])
        ranks = stats.rank_table(ranked, "ari").mean_rank
        plt.close(stats.cd_diagram(ranks, cd, out / f"cd_{k}"))
        entry["cd"] = cd
        report[k] = entry
    write_text_atomic(out / "statistics.json", json.dumps(report, indent=2) + "\n")
    return report
