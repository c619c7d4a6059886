import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from cflkit import plots  # noqa: E402


def test_save_writes_pdf_and_png_without_suffix_and_one_file_with(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    both = plots.save(fig, tmp_path / "fig")
    assert sorted(p.name for p in both) == ["fig.pdf", "fig.png"]
    assert (tmp_path / "fig.pdf").read_bytes().startswith(b"%PDF")
    assert plots.save(fig, tmp_path / "only.svg") == [tmp_path / "only.svg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png", "only.svg"]


def test_pdf_fonts_are_embedded_truetype(tmp_path):
    fig, ax = plt.subplots()
    ax.set_title("accuracy")
    plots.save(fig, tmp_path / "t.pdf")
    data = (tmp_path / "t.pdf").read_bytes()
    # fonttype 42: TrueType outlines (matplotlib writes them as CIDFontType2), never Type 3
    assert (b"/CIDFontType2" in data or b"/TrueType" in data) and b"/Type3" not in data


def test_a_failed_save_leaves_no_file_behind(tmp_path, monkeypatch):
    fig, _ = plt.subplots()
    monkeypatch.setattr(fig, "savefig", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        plots.save(fig, tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []


MODULES = {
    "style": ["COLUMN", "TEXT", "RC", "FORMATS", "OKABE_ITO", "EXTRA_COLORS", "METHOD_COLORS", "METHOD_STYLES",
              "MARKERS", "group_color", "method_color", "method_colors", "subplots", "save"],
    "data": ["client_samples", "label_histograms", "client_sizes", "subspace_bases", "site_distributions"],
    "training": ["accuracy_curves", "per_client_accuracy", "metric_over_rounds"],
    "clustering": ["similarity_matrix", "dendrogram", "assignment_over_rounds", "assignment_comparison",
                   "client_model_losses", "co_clustering"],
    "benchmark": ["VALUE_LABELS", "method_scenario_heatmap", "method_site_heatmap", "method_bars", "difficulty_curves"],
}


def test_every_public_name_is_the_package_s_and_lives_in_its_module():
    import importlib

    listed = sorted(n for names in MODULES.values() for n in names)
    assert sorted(plots.__all__) == listed
    for module, names in MODULES.items():
        mod = importlib.import_module(f"cflkit.plots.{module}")
        for name in names:
            assert getattr(plots, name) is getattr(mod, name), name
            assert name in plots.__doc__, f"the package docstring does not say where {name} lives"


def test_the_helpers_explain_uses_are_still_importable_from_the_package():
    from cflkit.plots import _cluster_color, _done, _figure, _style, style

    assert (_cluster_color, _done, _figure, _style) == (style._cluster_color, style._done, style._figure,
                                                         style._style)


def test_no_function_is_defined_in_two_modules():
    import ast
    from pathlib import Path

    seen = {}
    for path in sorted(Path(plots.__file__).parent.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                assert node.name not in seen, f"{node.name} in {seen.get(node.name)} and {path.name}"
                seen[node.name] = path.name


def test_importing_cflkit_plots_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, cflkit, cflkit.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


GROUPS = [0, 0, 1, 1, 2, 2]
ROWS = [[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 5.2], [9.0, 0.0], [9.3, 0.0]]


def test_dendrogram_draws_the_cut_half_way_between_the_merges_that_leave_k_clusters():
    from scipy.cluster import hierarchy

    fig = plots.dendrogram(ROWS, GROUPS, clusters=3)
    heights = hierarchy.linkage(ROWS, method="ward")[:, 2]
    ax = fig.axes[0]
    cut = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert cut == [pytest.approx((heights[-3] + heights[-2]) / 2)]
    assert [t.get_text() for t in ax.texts] == ["cut: 3 clusters"]
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == [str(c) for c in range(6)]
    plt.close(fig)


def test_dendrogram_takes_a_linkage_or_distances_as_well_as_rows():
    import numpy as np
    from scipy.cluster import hierarchy

    X = np.asarray(ROWS)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    for fig in (plots.dendrogram(hierarchy.linkage(X, "single"), GROUPS, method="single", cut=1.0),
                plots.dendrogram(D, GROUPS, distances=True, method="average")):
        assert fig.axes[0].get_ylabel() == "linkage distance"
        plt.close(fig)


@pytest.mark.parametrize("kw, message", [
    ({"distances": True}, "Ward linkage needs representation rows"),
    ({"metric": "cosine"}, "Ward linkage needs metric='euclidean'"),
    ({"clusters": 7}, "clusters must be between 2 and the 6 clients, got 7"),
])
def test_dendrogram_rejects_what_it_cannot_draw(kw, message):
    with pytest.raises(ValueError, match=message):
        plots.dendrogram(ROWS, GROUPS, **kw)


def test_dendrogram_rejects_rows_or_distances_of_the_wrong_size():
    with pytest.raises(ValueError, match="X has 2 rows, expected one per client"):
        plots.dendrogram(ROWS[:2], GROUPS)
    with pytest.raises(ValueError, match=r"distances have shape \(2, 2\), expected \(6, 6\)"):
        plots.dendrogram([[0, 1], [1, 0]], GROUPS, distances=True, method="average")


def _tidy():
    import pandas as pd

    return pd.DataFrame([{"method": m, "scenario": s, "seed": k, "round": r, "ari": 0.1 * r + 0.01 * k}
                         for m in ("fedavg", "ifca") for s in ("a", "b") for k in range(2) for r in (1, 2, 3)])


def test_metric_over_rounds_panels_share_one_legend_below():
    fig = plots.metric_over_rounds(_tidy(), "ari", by="method", panel="scenario", title="t")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["fedavg", "ifca"]
    assert fig.axes[0].get_ylabel() == "ari" and fig._suptitle.get_text() == "t"
    assert fig.get_size_inches()[0] == pytest.approx(plots.TEXT)
    plt.close(fig)


def test_metric_over_rounds_marks_thresholds_and_events_on_the_caller_s_axes():
    diagnostics = [{"round": r, "mean_norm": 1.0 / r, "max_norm": 2.0 / r, "vector": [1, 2]} for r in range(1, 6)]
    fig, ax = plots.subplots(width=plots.COLUMN)
    assert plots.metric_over_rounds(diagnostics, ["mean_norm", "max_norm"], thresholds={"e1": 0.5},
                                    events={"split": [2, 3]}, labels={"max_norm": "largest"}, ax=ax) is fig
    assert sorted(t.get_text() for t in ax.texts) == ["e1", "split"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean_norm", "largest"]
    assert ax.get_ylabel() == "value" and not fig.legends
    plt.close(fig)


@pytest.mark.parametrize("kw, message", [
    ({"key": "ari", "band": "iqr"}, "unknown band 'iqr'"),
    ({"key": "nope"}, "no column 'nope' to plot"),
    ({"key": ["ari", "seed"], "by": "method"}, "give one key"),
    ({"key": "ari", "panel": "scenario", "ax": "given"}, "'panel' makes its own figure"),
])
def test_metric_over_rounds_rejects_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        plots.metric_over_rounds(_tidy(), **kw)


def test_drawing_leaves_the_caller_s_rc_params_alone():
    before = {k: matplotlib.rcParams[k] for k in plots.RC}
    plt.close(plots.metric_over_rounds(_tidy(), "ari", by="method"))
    assert {k: matplotlib.rcParams[k] for k in plots.RC} == before
