"""Smoke runs of the teaching notebooks with papermill, at tiny parameters.

Each notebook must run headless from top to bottom (widgets switched on, to run that code
too), write its figures and tables into ``out_dir``, and be committed clean: no outputs,
no execution counts, exactly one ``parameters`` cell with documented, typed parameters.
"""
import json
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
}

# What each notebook writes into out_dir: figures (as .pdf and .png) and tables.
FIGURES = {
    "00_setup_and_scenarios": ["samples_iid", "labels_iid", "labels_dirichlet", "labels_shards", "labels_label_skew",
                               "samples_rotation", "samples_label_swap", "samples_feature_skew",
                               "sizes_quantity_skew", "sizes_composition", "samples_composition",
                               "samples_breast_cancer_feature_skew", "samples_breast_cancer_rotation"],
    "01_fedavg_from_scratch": ["accuracy_iid", "per_client_iid"],
    "02_heterogeneity_and_oracle_gap": [f"{kind}_{s}" for s in TINY["02_heterogeneity_and_oracle_gap"]["scenarios"]
                                        for kind in ("accuracy", "per_client")],
}
TABLES = {
    "00_setup_and_scenarios": ["scenarios.csv"],
    "01_fedavg_from_scratch": ["fedavg_match.csv", "results.csv"],
    "02_heterogeneity_and_oracle_gap": ["results.csv", "accuracy.csv"],
}


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
    assert nb.cells[-1].cell_type == "markdown" and "what you should have seen" in nb.cells[-1].source.lower()

    params = papermill.inspect_notebook(str(path))
    for name in ("out_dir", "interactive", *TINY[path.stem]):
        assert name in params, f"{path.name}: no parameter {name!r}; it has {sorted(params)}"
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{path.name}: parameter {name!r} has no type annotation"
        assert p["help"], f"{path.name}: parameter {name!r} has no '# comment' saying what it is"
    assert params["interactive"]["default"] == "False", "widgets must be off by default"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    import papermill

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
    assert not list(out.glob(".*")), "temporary files left behind in out_dir"
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
    assert not re.search(r"Traceback|Error:", _text(executed)), "a cell printed an error"
    # interactive=True: the widgets' outputs live in the notebook's widget state.
    widgets = json.dumps(executed.metadata.get("widgets", {}))
    assert '"ename"' not in widgets, "the interactive view raised an error"
    assert "image/png" in widgets, "the interactive view showed no figure"
