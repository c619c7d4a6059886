"""The article: aggregation of batch runs into figures, tables and macros, and the PDF build.

The chain test runs notebooks 08, 09, 10, 11 and 14 at their tiny smoke-test sizes through ``cflkit
batch``, a one-round-per-size bench, the aggregation into a copy of ``paper/``, and latexmk;
then checks that every ``\\includegraphics`` / ``\\input`` target exists and that LaTeX
reports no undefined reference or citation. Without latexmk the PDF test is skipped, with
the reason shown, unless ``CFLKIT_REQUIRE_LATEX=1`` (set by ``.ci/run``), where it fails.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cflkit.article import builder as P
from cflkit.study.batch import load_experiment

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_DIRS = ROOT.parent / "shared" / "data"

# The tiny sizes of tests/test_notebooks.py; entry names as in experiments/paper.yaml.
TINY_RUNS = [
    {"name": "benchmark", "notebook": str(ROOT / "notebooks" / "08_benchmark_of_clustering.ipynb"),
     "parameters": {"clients": 8, "groups": 2, "rounds": 2, "local_epochs": 1, "methods": ["fedavg", "pacfl", "oracle"],
                    "scenarios": ["shards", "label_swap"], "seeds": [0, 1]},
     "figures": ["ari_heatmap", "accuracy_heatmap", "ari_over_rounds"], "tables": ["results.csv", "ari_per_round.csv"]},
    {"name": "heart", "notebook": str(ROOT / "notebooks" / "09_medical_heart_disease.ipynb"),
     "parameters": {"methods": ["fedavg", "local", "metadata", "flhc"], "seeds": [0], "rounds": 2, "local_epochs": 1,
                    "restarts": 1, "sattler_warmup": 1, "flamby_seeds": [0],
                    "tcga_methods": ["fedavg", "pacfl"]},
     "figures": ["co_clustering", "per_hospital"], "tables": ["results.csv", "hospitals.csv", "tcga.csv"]},
    {"name": "air", "notebook": str(ROOT / "notebooks" / "10_environmental_air_quality.ipynb"),
     "parameters": {"methods": ["fedavg", "oracle", "flhc"], "seeds": [0], "rounds": 2, "local_epochs": 1,
                    "restarts": 1, "sattler_warmup": 1},
     "figures": ["assignments", "per_station"], "tables": ["results.csv", "stations.csv"]},
    {"name": "more_real", "notebook": str(ROOT / "notebooks" / "14_more_real_federations.ipynb"),
     "parameters": {"methods": ["fedavg", "local", "oracle", "flhc"], "seeds": [0], "rounds": 2, "local_epochs": 1,
                    "physionet_rounds": 2, "restarts": 1},
     "figures": ["ari_vs_references", "worst_clients"],
     "tables": ["results.csv", "federations.csv", "worst_clients.csv", "saps.csv"]},
    {"name": "explain", "notebook": str(ROOT / "notebooks" / "11_explaining_clusters.ipynb"),
     "parameters": {"clients": 8, "groups": 2, "rounds": 2, "local_epochs": 1, "probes": 3, "num_samples": 50,
                    "explainer_seeds": 2, "scenarios": ["rotation", "label_swap"]},
     "figures": ["importance_rotation", "threshold_tree_rotation", "heart_group_importance"],
     "tables": ["membership.csv"]},
]


# ---------------------------------------------------------------- pure helpers

def test_tex_escape_and_macro_names():
    assert P.tex_escape("rotation+quantity_skew 50% #1 & $x") == r"rotation+quantity\_skew 50\% \#1 \& \$x"
    assert P.macro_name("bench", "ari", "fed_avg") == "BenchAriFedAvg"
    assert P.macro_name("bench", "acc", "rotation+quantity_skew") == "BenchAccRotationQuantitySkew"
    assert P.macro_name("perf", "k2") == "PerfKTwo", "LaTeX command names hold letters only"
    with pytest.raises(ValueError):
        P.macro_name("_", "+")


def test_mean_std_and_tabular():
    assert P.mean_std([0.5, 0.7]) == r"0.60 $\pm$ 0.14"
    assert P.mean_std([0.5]) == "0.50" and P.mean_std([]) == "--" and P.mean_std([float("nan"), 1.0]) == "1.00"
    text = P.tabular(["a", "b"], [["1", "2"], ["3", "4"]], "lc", "src", groups=[("g1", 0), ("g2", 1)])
    body = text.splitlines()
    assert body[1] == r"\begin{tabular}{lc}" and body[-1] == r"\end{tabular}"
    assert body.count(r"\midrule") == 2 and r"\multicolumn{2}{l}{\emph{g2}} \\" in body
    macros = P.macros_tex({"B": "2", "A": "1"}, "x.yaml")
    assert macros.splitlines()[1:] == [r"\newcommand{\A}{1}", r"\newcommand{\B}{2}"]


def test_round_time_arguments_are_checked():
    from cflkit.study.batch import parse_experiment

    exp = parse_experiment({"paper": {"round_time": {"clients": [10, 50], "ref_repeats": 2}},
                            "runs": [{"name": "a", "notebook": "a.ipynb"}]})
    assert P.round_time_args(exp) == ["--clients", "10", "50", "--ref-repeats", "2"]
    bad = parse_experiment({"paper": {"round_time": {"client": [10]}}, "runs": [{"name": "a", "notebook": "a.ipynb"}]})
    with pytest.raises(ValueError, match="unknown key 'client'"):
        P.round_time_args(bad)


# ---------------------------------------------------------------- the chain

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A tiny batch run of the article's notebooks, aggregated into a copy of paper/."""
    from cflkit.cli import main

    tmp = tmp_path_factory.mktemp("chain")
    paper = tmp / "paper"
    paper.mkdir()
    for name in ("main.tex", "refs.bib"):
        shutil.copy(ROOT / "paper" / name, paper / name)
    exp = tmp / "tiny.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "tiny", "parameters": {"workers": 1},
        "paper": {"dir": str(paper), "round_time": {"clients": [4], "samples": 50, "repeats": 1, "ref_repeats": 1,
                                                      "max_fit_clients": 2}},
        "runs": TINY_RUNS}))
    env = {"CFLKIT_OFFLINE_DIRS": os.environ.get("CFLKIT_OFFLINE_DIRS") or str(OFFLINE_DIRS)}
    saved = {k: os.environ.get(k) for k in (*env, "MPLBACKEND")}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)
    try:
        code = main(["batch", str(exp), "--workers", "2", "--runs", str(tmp / "runs"), "--no-progress"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert code == 0, "the tiny batch failed; see its index.csv and failed/ run directories"
    return load_experiment(exp), tmp / "runs", paper


@pytest.mark.slow
@pytest.mark.notebook
def test_aggregation_writes_the_papers_figures_tables_and_macros(chain):
    experiment, runs, paper = chain
    for name in ("benchmark_heatmaps", "benchmark_ari_over_rounds", "heart_co_clustering", "air_per_station"):
        pdf = (paper / "figures" / f"{name}.pdf").read_bytes()
        assert pdf[:5] == b"%PDF-" and b"/Type3" not in pdf, f"{name}.pdf: not a PDF with TrueType fonts"
    macros = dict(re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", (paper / "macros.tex").read_text()))
    # known answers at the tiny size: 3 methods x 2 scenarios x 2 seeds, pacfl with K given and K unknown
    # (16 runs); oracle ARI 1, FedAvg 0 (one cluster); the headline is K unknown
    assert macros["BenchRuns"] == "16" and macros["BenchSeeds"] == "2" and macros["BenchMethods"] == "3"
    assert macros["BenchKSetting"] == "unknown"
    # the statistics: 2 scenarios x 2 seeds = 4 blocks, fedavg and pacfl ranked (the oracle left out)
    assert macros["BenchBlocks"] == "4" and macros["BenchTopRanked"] == "pacfl" and float(macros["BenchTopRank"]) <= 1.5
    stats_table = (paper / "tables" / "benchmark_stats.tex").read_text()
    assert "\npacfl &" in stats_table and "\nfedavg &" in stats_table and "oracle" not in stats_table
    assert (paper / "figures" / "benchmark_cd.pdf").read_bytes()[:5] == b"%PDF-"
    assert macros["BenchAriOracle"] == "1.00" and macros["BenchAriFedavg"] == "0.00"
    assert macros["HeartPatients"] == "740" and macros["AirStations"] == "12"
    assert (macros["MoreRealCitiesClients"], macros["MoreRealPatientsClients"], macros["MoreRealSubsitesClients"],
            macros["MoreRealIcuClients"]) == ("16", "42", "16", "4")
    assert macros["MoreRealCitiesBestMethod"] == "flhc" and macros["MoreRealPatientsWorstClients"] == "5"
    assert macros["MoreRealSapsPooledAUROC"] == "0.67", "docs/physionet2012.md: SAPS-I AUROC 0.671 on set B"
    assert macros["HaveExplain"] == "yes"
    explain = (paper / "tables" / "explain_figures.tex").read_text()
    assert re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{figures/(\w+)\}", explain) == \
        ["explain_importance_rotation", "explain_threshold_tree_rotation", "explain_heart_group_importance"]
    # the table agrees with the runs' own results tables
    results = pd.concat(pd.read_csv(p / "out" / "results.csv") for p in (runs / "tiny").glob("benchmark-*"))
    table = (paper / "tables" / "benchmark.tex").read_text()
    pacfl = results[(results.method == "pacfl") & (results.scenario == "shards") & (results.clusters == "auto")]
    assert P.mean_std(pacfl["accuracy_mean"]) in table.split("pacfl &")[1].splitlines()[0]
    k_table = (paper / "tables" / "benchmark_k.tex").read_text()
    pacfl = results[results.method == "pacfl"]
    given, unknown = (pacfl.loc[pacfl.clusters == c, "ari"].mean() for c in ("groups", "auto"))
    assert k_table.split("\npacfl &")[1].startswith(f" {given:.2f} & {unknown:.2f} &")
    assert k_table.split("\noracle &")[1].startswith(" 1.00 & 1.00 &"), "no K: the same runs in both settings"
    provenance = pd.read_csv(paper / "figures" / "provenance.csv")
    assert set(provenance["file"]) >= {"benchmark_heatmaps.pdf", "benchmark.tex", "heart.tex", "air.tex",
                                       "more_real.tex", "round_time.tex", "heart_co_clustering.pdf"}
    assert (provenance.loc[provenance["file"] == "heart.tex", "notebook"] == "09_medical_heart_disease.ipynb").all()
    assert (provenance.loc[provenance["file"] == "more_real.tex", "notebook"] == "14_more_real_federations.ipynb").all()
    # notebook 14's table: one block per federation, FedAvg's scores as in the run's results table
    more = pd.concat(pd.read_csv(p / "out" / "results.csv") for p in (runs / "tiny").glob("more_real-*"))
    table = (paper / "tables" / "more_real.tex").read_text()
    assert table.count("\\multicolumn{6}") == 4 and table.count("\nfedavg &") == 4 and "SAPS-I" in table
    fedavg = more[(more.federation == "parkinsons") & (more.method == "fedavg")]["score_mean"]
    assert f"& {P.mean_std(fedavg, 1)} &" in table.split("Parkinson")[1].split("\nfedavg &")[1].splitlines()[0]
    # notebook 09's TCGA-BRCA table: FedAvg's pooled C-index as in the run's tcga.csv, FLamby's mean beside it
    tcga = pd.concat(pd.read_csv(p / "out" / "tcga.csv") for p in (runs / "tiny").glob("heart-*"))
    table = (paper / "tables" / "tcga.tex").read_text()
    fedavg_row = table.split("\nfedavg &")[1].splitlines()[0]
    assert fedavg_row.startswith(f" {P.mean_std(tcga.loc[tcga.method == 'fedavg', 'pooled c_index'])} & 0.74 &")
    assert "\npacfl &" in table and "\ncentralized &" in table
    assert (provenance.loc[provenance["file"] == "tcga.tex", "notebook"] == "09_medical_heart_disease.ipynb").all()
    # nothing changed: a second aggregation writes nothing (so latexmk has nothing to rebuild)
    assert P.aggregate(experiment, root=runs) == []


def _targets(tex: Path, root: Path) -> list[Path]:
    """Every \\includegraphics and \\input target of ``tex``, following \\input recursively."""
    text = re.sub(r"(?<!\\)%.*", "", tex.read_text())
    found = []
    for kind, name in re.findall(r"\\(includegraphics|input)(?:\[[^\]]*\])?\{([^}]+)\}", text):
        path = root / name
        if kind == "input":
            path = path if path.suffix == ".tex" else path.with_name(path.name + ".tex")
            found.append(path)
            if path.is_file():
                found += _targets(path, root)
        else:
            found.append(path if path.suffix else path.with_name(path.name + ".pdf"))
    return found


@pytest.mark.slow
@pytest.mark.notebook
def test_the_pdf_builds_with_every_figure_and_table_and_no_undefined_reference(chain):
    _, _, paper = chain
    targets = _targets(paper / "main.tex", paper)
    missing = [str(t.relative_to(paper)) for t in targets if not t.is_file()]
    assert not missing, f"main.tex includes files the aggregation did not write: {missing}"
    assert {"figures/benchmark_heatmaps.pdf", "tables/benchmark.tex", "tables/round_time.tex", "macros.tex"} <= \
        {str(t.relative_to(paper)) for t in targets}
    if shutil.which("latexmk") is None:
        reason = ("latexmk is not installed, so paper/main.pdf cannot be built; install latexmk "
                  "texlive-latex-recommended texlive-fonts-recommended texlive-publishers")
        if os.environ.get("CFLKIT_REQUIRE_LATEX") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-outdir=build",
                           "main.tex"], cwd=paper, capture_output=True, text=True, timeout=300)
    log = (paper / "build" / "main.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert not re.search(r"(Reference|Citation) `[^']*' on page \d+ undefined", log), \
        re.findall(r".*undefined.*", log)
    assert "There were undefined references" not in log and "Rerun to get" not in log
    assert "Warning--" not in (paper / "build" / "main.blg").read_text(), "BibTeX warned (a refs.bib entry)"
    pages = int(re.search(r"Output written on \S+ \((\d+) pages?", log).group(1))
    assert pages >= 3, f"the article has {pages} page(s)"
    assert (paper / "build" / "main.pdf").read_bytes()[:5] == b"%PDF-"


def test_the_bench_script_the_batch_runs_is_where_the_builder_looks():
    from cflkit.article.builder import BENCH_SCRIPT

    assert BENCH_SCRIPT.is_file() and BENCH_SCRIPT.parent.parent == Path(__file__).resolve().parents[1]
