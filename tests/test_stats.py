"""Rank statistics (cflkit.study.stats) against numbers worked by hand or printed in
Demšar (2006), "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 7."""
import logging

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cflkit.study import stats  # noqa: E402

# Demšar (2006), Table 6: AUC of four C4.5 variants on 14 UCI data sets. The paper ranks
# voting's C4.5+cf (printed 0.975) above C4.5+m+cf (also printed 0.975): its unrounded AUC
# is higher, so the table here carries 0.9751 for it; the printed tie is tested apart.
DEMSAR_METHODS = ("C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf")
DEMSAR_AUC = {
    "adult (sample)": (0.763, 0.768, 0.771, 0.798), "breast cancer": (0.599, 0.591, 0.590, 0.569),
    "breast cancer wisconsin": (0.954, 0.971, 0.968, 0.967), "cmc": (0.628, 0.661, 0.654, 0.657),
    "ionosphere": (0.882, 0.888, 0.886, 0.898), "iris": (0.936, 0.931, 0.916, 0.931),
    "liver disorders": (0.661, 0.668, 0.609, 0.685), "lung cancer": (0.583, 0.583, 0.563, 0.625),
    "lymphography": (0.775, 0.838, 0.866, 0.875), "mushroom": (1.000, 1.000, 1.000, 1.000),
    "primary tumor": (0.940, 0.962, 0.965, 0.962), "rheum": (0.619, 0.666, 0.614, 0.669),
    "voting": (0.972, 0.981, 0.9751, 0.975), "wine": (0.957, 0.978, 0.946, 0.970),
}


def demsar(methods=DEMSAR_METHODS, printed_voting: bool = False) -> pd.DataFrame:
    rows = []
    for name, aucs in DEMSAR_AUC.items():
        if printed_voting and name == "voting":
            aucs = (0.972, 0.981, 0.975, 0.975)
        rows += [{"dataset": name, "method": m, "auc": a} for m, a in zip(DEMSAR_METHODS, aucs) if m in methods]
    return pd.DataFrame(rows)


# 3 methods × 4 blocks (dataset × scenario × seed), one tie. Ranks (1 = best):
#   rotation s0    a 0.9 b 0.8 c 0.7  -> 1, 2, 3
#   rotation s1    a 0.6 b 0.9 c 0.5  -> 2, 1, 3
#   label_swap s0  a 0.8 b 0.8 c 0.9  -> 2.5, 2.5, 1
#   label_swap s1  a 0.7 b 0.6 c 0.5  -> 1, 2, 3
# mean ranks a 6.5/4 = 1.625, b 7.5/4 = 1.875, c 10/4 = 2.5; means a 0.75, b 0.775, c 0.65.
SMALL = {("rotation", 0): (0.9, 0.8, 0.7), ("rotation", 1): (0.6, 0.9, 0.5),
         ("label_swap", 0): (0.8, 0.8, 0.9), ("label_swap", 1): (0.7, 0.6, 0.5)}


def small() -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "digits", "scenario": sc, "seed": seed, "method": m, "ari": v}
                         for (sc, seed), values in SMALL.items() for m, v in zip("abc", values)])


def shuffled(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


# ---- ranks ----------------------------------------------------------------------------

def test_demsar_average_ranks():
    mean = stats.rank_table(demsar(), "auc", blocks="dataset").mean_rank
    expected = {"C4.5": 3.143, "C4.5+m": 2.000, "C4.5+cf": 2.893, "C4.5+m+cf": 1.964}  # Demšar, Table 6
    assert mean.to_dict() == pytest.approx(expected, abs=5e-4)
    assert list(mean.index) == ["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]  # best first


def test_printed_tie_gets_the_average_rank():
    # voting as printed (0.975 twice): ranks 2 and 3 become 2.5 each, so C4.5+cf's sum goes
    # from 40.5 to 41 and C4.5+m+cf's from 27.5 to 27.
    mean = stats.rank_table(demsar(printed_voting=True), "auc", blocks="dataset").mean_rank
    assert mean["C4.5+cf"] == pytest.approx(41 / 14)
    assert mean["C4.5+m+cf"] == pytest.approx(27 / 14)
    assert mean["C4.5"] == pytest.approx(44 / 14)


def test_small_ranks_by_hand():
    table = stats.rank_table(small(), "ari")
    assert table.ranks.loc[("digits", "label_swap", 0)].tolist() == [2.5, 2.5, 1.0]
    assert table.mean_rank.to_dict() == pytest.approx({"a": 1.625, "b": 1.875, "c": 2.5})
    assert table.dropped == 0


def test_lower_is_better_reverses_the_ranks():
    mean = stats.rank_table(small(), "ari", higher=False).mean_rank  # 4 - rank
    assert mean.to_dict() == pytest.approx({"a": 2.375, "b": 2.125, "c": 1.5})
    assert list(mean.index) == ["c", "b", "a"]


# ---- Friedman ---------------------------------------------------------------------------

def test_demsar_friedman_without_tie_correction():
    fr = stats.friedman(demsar(), "auc", blocks="dataset", tie_correction=False)
    assert (fr.n_blocks, fr.n_methods) == (14, 4)
    assert fr.chi2 == pytest.approx(9.28, abs=5e-3)  # Demšar: χ²_F = 9.28
    assert fr.f == pytest.approx(3.69, abs=5e-3)  # Demšar: F_F = 3.69 > F(3, 39) critical value 2.85
    assert fr.p_f < 0.05


def test_demsar_friedman_with_tie_correction():
    # Rank sums 44, 28, 40.5, 27.5: χ² = 12/(14·4·5) · 5116.5 − 3·14·5 = 9.2786. Tied groups:
    # mushroom (4 methods, t³−t = 60), iris, lung cancer, primary tumor (2 each, 6):
    # C = 1 − 78/(14·4·15) = 762/840, χ²/C = 10.2283; F = 13·χ²/(42 − χ²) = 4.1851.
    fr = stats.friedman(demsar(), "auc", blocks="dataset")
    assert fr.tie_correction
    assert fr.chi2 == pytest.approx(9.278571 * 840 / 762, rel=1e-6)
    assert fr.f == pytest.approx(13 * fr.chi2 / (42 - fr.chi2))
    assert fr.f == pytest.approx(4.1851, abs=1e-4)


def test_small_friedman_by_hand():
    # χ² = 12·4/(3·4) · (1.625² + 1.875² + 2.5² − 3·16/4) = 4 · 0.40625 = 1.625;
    # one tie of two: C = 1 − 6/(4·3·8) = 0.9375; F_F = 3·1.625/(8 − 1.625) = 0.76471.
    plain = stats.friedman(small(), "ari", tie_correction=False)
    assert plain.chi2 == pytest.approx(1.625)
    assert plain.f == pytest.approx(4.875 / 6.375)
    assert stats.friedman(small(), "ari").chi2 == pytest.approx(1.625 / 0.9375)
    assert plain.p_chi2 > 0.1


def test_friedman_of_two_methods_and_of_perfect_agreement():
    two = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "method": ["x", "y"] * 3, "ari": [1, 0, 1, 0, 1, 0]})
    fr = stats.friedman(two, "ari", blocks="seed")
    # x wins every block: mean ranks 1 and 2, χ² = 12·3/(2·3) · (1 + 4 − 4.5) = 3 = N(k−1)
    assert fr.chi2 == pytest.approx(3.0)
    assert fr.f == np.inf and fr.p_f == 0.0


# ---- critical difference -----------------------------------------------------------------

def test_q_alpha_matches_demsar_table_5():
    table = (1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164)  # q_0.05, k = 2..10
    for k, q in zip(range(2, 11), table):
        assert stats.q_alpha(k) == pytest.approx(q, abs=1e-3)
    assert stats.q_alpha(4, alpha=0.10) == pytest.approx(2.291, abs=1e-3)


def test_demsar_critical_difference():
    assert stats.critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)  # 2.569·√(20/84)
    assert stats.critical_difference(4, 14, alpha=0.10) == pytest.approx(1.12, abs=5e-3)


# ---- post-hoc tests -----------------------------------------------------------------------

def test_demsar_nemenyi():
    # Demšar: C4.5 trails C4.5+m by 1.143 and C4.5+m+cf by 1.179 average ranks, under the
    # CD of 1.25 at α = 0.05 and over the CD of 1.12 at α = 0.10; every other gap is smaller.
    p = stats.posthoc(demsar(), "auc", blocks="dataset")
    assert list(p.index) == list(p.columns) == sorted(DEMSAR_METHODS)
    assert np.allclose(p.to_numpy(), p.to_numpy().T) and np.all(np.diag(p.to_numpy()) == 1)
    for other in ("C4.5+m", "C4.5+m+cf"):
        assert 0.05 < p.loc["C4.5", other] < 0.10
    rest = [("C4.5", "C4.5+cf"), ("C4.5+cf", "C4.5+m"), ("C4.5+cf", "C4.5+m+cf"), ("C4.5+m", "C4.5+m+cf")]
    assert all(p.loc[a, b] > 0.10 for a, b in rest)


def test_demsar_wilcoxon_of_one_pair():
    # Demšar §3.1.3, C4.5 vs C4.5+m: R+ = 93, R− = 12 (the two zero differences split);
    # z = (12 − 52.5)/√(14·15·29/24) = −2.54, p ≈ 0.011. One pair: Holm changes nothing.
    p = stats.posthoc(demsar(("C4.5", "C4.5+m")), "auc", blocks="dataset", test="wilcoxon_holm")
    assert p.loc["C4.5", "C4.5+m"] == pytest.approx(0.011, abs=5e-4)


def test_wilcoxon_holm_by_hand():
    # a > b > c on all 5 blocks, all differences distinct: every exact two-sided p is
    # 2/2⁵ = 0.0625; Holm multiplies the three equal p-values by 3, 2, 1 and keeps the
    # running maximum: 0.1875 for every pair.
    a = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    step = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    rows = [{"seed": s, "method": m, "score": v}
            for m, col in (("a", a), ("b", a - step), ("c", a - 2 * step)) for s, v in enumerate(col)]
    p = stats.posthoc(pd.DataFrame(rows), "score", blocks="seed", test="wilcoxon_holm")
    off = p.to_numpy()[~np.eye(3, dtype=bool)]
    assert off == pytest.approx(np.full(6, 0.1875))


# ---- bootstrap -------------------------------------------------------------------------------

def test_bootstrap_of_constant_values_has_zero_width():
    assert stats.bootstrap_ci([0.7, 0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert stats.bootstrap_ci([0.3]) == (0.3, 0.3)


def test_bootstrap_of_two_values():
    # Resampling (0, 1): means 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the 95 % percentile
    # interval runs from 0 to 1.
    assert stats.bootstrap_ci([0.0, 1.0], n=2000) == pytest.approx((0.0, 1.0))


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(size=30)
    low, high = stats.bootstrap_ci(x, seed=3)
    assert (low, high) == stats.bootstrap_ci(x, seed=3)
    assert x.min() < low < x.mean() < high < x.max()
    assert stats.bootstrap_ci(x, level=0.5, seed=3)[1] - stats.bootstrap_ci(x, level=0.5, seed=3)[0] < high - low


def test_bootstrap_drops_nan_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="cflkit"):
        assert stats.bootstrap_ci([0.5, np.nan, 0.5]) == (0.5, 0.5)
    assert "dropped 1 NaN" in caplog.text


# ---- win / tie / loss and the summary table ----------------------------------------------------

def test_win_tie_loss_by_hand():
    # against a: b loses 0.8<0.9, wins 0.9>0.6, ties 0.8=0.8, loses 0.6<0.7;
    #            c loses, loses, wins 0.9>0.8, loses.
    table = stats.win_tie_loss(small(), "ari", reference="a")
    assert table.loc["b"].tolist() == [1, 1, 2]
    assert table.loc["c"].tolist() == [1, 0, 3]
    assert "a" not in table.index
    # a tolerance of 0.15 turns b's two losses by 0.1 into ties
    assert stats.win_tie_loss(small(), "ari", reference="a", tie=0.15).loc["b"].tolist() == [1, 3, 0]
    # lower is better: b's losses become wins
    assert stats.win_tie_loss(small(), "ari", reference="a", higher=False).loc["b"].tolist() == [2, 1, 1]


def test_summary_table_by_hand():
    table = stats.summary_table(small(), "ari", reference="a", n=999)
    assert table["method"].tolist() == ["a", "b", "c"]  # by mean rank
    assert table["mean"].tolist() == pytest.approx([0.75, 0.775, 0.65])
    assert table["mean_rank"].tolist() == pytest.approx([1.625, 1.875, 2.5])
    assert (table["ci_low"] <= table["mean"]).all() and (table["mean"] <= table["ci_high"]).all()
    assert table.loc[0, ["wins", "ties", "losses"]].isna().all()  # the reference's own row
    assert table.loc[1, ["wins", "ties", "losses"]].tolist() == [1, 1, 2]
    assert "wins" not in stats.summary_table(small(), "ari", reference=None, n=99).columns


def test_summary_table_lower_is_better_keeps_the_raw_means():
    table = stats.summary_table(small(), "ari", higher=False, reference="a", n=99)
    assert table["method"].tolist() == ["c", "b", "a"]
    assert table.set_index("method")["mean"].to_dict() == pytest.approx({"a": 0.75, "b": 0.775, "c": 0.65})


# ---- missing cells, row order ----------------------------------------------------------------

def with_failures() -> pd.DataFrame:
    extra = pd.DataFrame([
        {"dataset": "digits", "scenario": "noise", "seed": 0, "method": "a", "ari": 0.1},
        {"dataset": "digits", "scenario": "noise", "seed": 0, "method": "b", "ari": 0.2},  # c has no row
        {"dataset": "digits", "scenario": "noise", "seed": 1, "method": "a", "ari": 0.1},
        {"dataset": "digits", "scenario": "noise", "seed": 1, "method": "b", "ari": np.nan},  # b failed
        {"dataset": "digits", "scenario": "noise", "seed": 1, "method": "c", "ari": 0.3},
    ])
    return pd.concat([small(), extra], ignore_index=True)


def test_incomplete_blocks_are_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="cflkit"):
        table = stats.rank_table(with_failures(), "ari")
    assert table.dropped == 2
    assert "dropped 2 of 6 blocks" in caplog.text
    assert table.mean_rank.to_dict() == pytest.approx({"a": 1.625, "b": 1.875, "c": 2.5})
    assert stats.friedman(with_failures(), "ari").n_blocks == 4


def test_row_order_changes_nothing():
    base = with_failures()
    ref_ranks = stats.rank_table(base, "ari")
    ref_f = stats.friedman(base, "ari")
    ref = [stats.posthoc(base, "ari"), stats.posthoc(base, "ari", test="wilcoxon_holm"),
           stats.win_tie_loss(base, "ari", reference="a"), stats.summary_table(base, "ari", reference="a", n=199)]
    for seed in range(3):
        df = shuffled(base, seed)
        ranks = stats.rank_table(df, "ari")
        pd.testing.assert_frame_equal(ranks.ranks, ref_ranks.ranks)
        pd.testing.assert_series_equal(ranks.mean_rank, ref_ranks.mean_rank)
        assert stats.friedman(df, "ari") == ref_f
        got = [stats.posthoc(df, "ari"), stats.posthoc(df, "ari", test="wilcoxon_holm"),
               stats.win_tie_loss(df, "ari", reference="a"), stats.summary_table(df, "ari", reference="a", n=199)]
        for g, r in zip(got, ref):
            pd.testing.assert_frame_equal(g, r)


def test_shuffled_demsar_keeps_its_numbers():
    df = shuffled(demsar(), 7)
    assert stats.friedman(df, "auc", blocks="dataset", tie_correction=False).chi2 == pytest.approx(9.2786, abs=1e-4)
    assert stats.rank_table(df, "auc", blocks="dataset").mean_rank["C4.5"] == pytest.approx(44 / 14)


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: stats.rank_table(small(), "acc"), r"unknown score column 'acc'; choose one of: .*ari"),
    (lambda: stats.rank_table(small(), "method"), r"score column 'method' is not numeric"),
    (lambda: stats.rank_table(small(), "ari", blocks=("dataset", "site")), r"unknown column 'site'"),
    (lambda: stats.rank_table(small()[small().method == "a"], "ari"), r"at least 2 methods, got 1: a"),
    (lambda: stats.rank_table(small().query("seed == 0 and scenario == 'rotation'"), "ari"),
     r"at least 2 complete blocks, got 1"),
    (lambda: stats.rank_table(small(), "ari", blocks=("dataset", "scenario")), r"share a block and a method"),
    (lambda: stats.posthoc(small(), "ari", test="tukey"), r"unknown test 'tukey'; choose one of: nemenyi, wilcoxon"),
    (lambda: stats.win_tie_loss(small(), "ari"), r"unknown reference method 'fedavg'; choose one of: a, b, c"),
    (lambda: stats.win_tie_loss(small(), "ari", reference="a", tie=-1), r"tie must be >= 0"),
    (lambda: stats.summary_table(small(), "ari", reference="fedprox"), r"unknown reference method 'fedprox'"),
    (lambda: stats.bootstrap_ci([np.nan]), r"at least one value"),
    (lambda: stats.bootstrap_ci([1, 2], level=95), r"level must lie in \(0, 1\)"),
    (lambda: stats.q_alpha(1), r"k >= 2"),
    (lambda: stats.critical_difference(4, 1), r"n >= 2"),
])
def test_bad_input_names_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- the critical-difference diagram ---------------------------------------------------------------

def test_cd_diagram_writes_pdf_and_png(tmp_path):
    table = stats.rank_table(demsar(), "auc", blocks="dataset")
    fig = stats.cd_diagram(table.mean_rank, stats.critical_difference(4, 14), tmp_path / "cd_auc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cd_auc.pdf", "cd_auc.png"]  # nothing half-written
    assert (tmp_path / "cd_auc.pdf").read_bytes().startswith(b"%PDF")
    assert any(t.get_text() == "CD = 1.25" for t in fig.axes[0].texts)
    matplotlib.pyplot.close(fig)


def test_cd_diagram_bars_follow_the_cd_or_the_p_values(tmp_path):
    ranks = pd.Series({"x": 1.0, "y": 1.5, "z": 3.0})
    # CD 1.0: x–y (0.5) not different, y–z (1.5) and x–z (2.0) different -> one bar
    fig = stats.cd_diagram(ranks, 1.0)
    bars = [ln for ln in fig.axes[0].lines if ln.get_linewidth() == 1.6]
    assert [sorted(ln.get_xdata()) for ln in bars] == [[1.0, 1.5]]
    p = pd.DataFrame(1.0, index=list("xyz"), columns=list("xyz"))
    fig2 = stats.cd_diagram(ranks, None, tmp_path / "cd.svg", p_values=p)  # nothing significant: one bar over all
    bars = [ln for ln in fig2.axes[0].lines if ln.get_linewidth() == 1.6]
    assert [sorted(ln.get_xdata()) for ln in bars] == [[1.0, 1.5, 3.0]]
    assert (tmp_path / "cd.svg").is_file()
    with pytest.raises(ValueError, match="give cd"):
        stats.cd_diagram(ranks, None)
    matplotlib.pyplot.close("all")
