"""``cflkit explain RUN_DIR``: the report of a finished run, end to end on a tiny run."""
import json
import shutil

import pytest

from cflkit.cli import main

TINY = ["--dataset", "digits", "--method", "oracle", "--clients", "12", "--set", "groups=4", "--rounds", "2",
        "--local_epochs", "1", "--seed", "0"]


@pytest.fixture(scope="module")
def swap_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "swap"
    assert main(["run", *TINY, "--scenario", "label_swap", "--out", str(out), "--no-progress"]) == 0
    return out


def test_explain_writes_the_report_of_a_run(swap_run, tmp_path, capsys):
    out = tmp_path / "report"
    capsys.readouterr()
    assert main(["explain", str(swap_run), "--out", str(out), "--probes", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "membership not explained by these descriptors" in printed and f"wrote {out}/" in printed
    for name in ("report.md", "report.html", "quality.json", "tables/agreement.csv",
                 "tables/membership_group_importance.csv", "tables/divergence.csv", "tables/stability.csv",
                 "figures/group_importance.pdf", "figures/group_importance.png", "figures/contingency_planted.png",
                 "figures/stability.png", "figures/divergence.png"):
        assert (out / name).is_file(), name
    q = json.loads((out / "quality.json").read_text())
    m = q["membership"]
    assert not m["explained"] and 0 <= m["fidelity"] <= 1 and 0 <= m["baseline_fidelity"] <= 1
    assert q["agreement"]["planted"]["ari"] == pytest.approx(1.0)  # the oracle's assignment
    assert "contrast" in q or "contrast" in q["skipped"]
    md = (out / "report.md").read_text()
    assert "**Membership not explained by these descriptors**" in md and "→ cluster" not in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and "<table>" in html
    assert "<strong>Membership not explained by these descriptors</strong>" in html and "<em>how</em>" in html
    # a second report replaces the first atomically: no temporary directories are left behind
    assert main(["explain", str(swap_run), "--out", str(out), "--probes", "0", "--no-progress"]) == 0
    assert json.loads((out / "quality.json").read_text())["skipped"]["contrast"] == "--probes 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_directory_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err
    (tmp_path / "empty").mkdir()
    assert main(["explain", str(tmp_path / "empty")]) == 2
    assert "missing config.json" in capsys.readouterr().err


def test_a_run_without_models_says_re_run_it(swap_run, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(swap_run, old, ignore=shutil.ignore_patterns("models.npz", "explain"))
    assert main(["explain", str(old), "--probes", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "models.npz" in err and "re-run it into a new directory" in err
    # the advice works as typed: a new run directory (the old run is left as it is), then its report
    advice = err.split("and explain that one: ")[1].strip()
    rerun, explain = (part.split()[1:] for part in advice.split(" && "))
    assert main(rerun + ["--no-progress"]) == 0 and main(explain + ["--probes", "0", "--no-progress"]) == 0
    assert sorted(p.name for p in old.iterdir()) == sorted(p.name for p in swap_run.iterdir() if p.name not in
                                                            ("models.npz", "explain"))
    assert (tmp_path / "old-again" / "explain" / "report.md").is_file()
    assert main(["explain", str(swap_run), "--probes", "-1"]) == 2
    assert "argument --probes: must be >= 0, got -1" in capsys.readouterr().err
