"""``cflkit batch``: grid expansion, run keys, dry run, resume after a killed batch, failure isolation.

The mechanics run a tiny notebook written here (no TensorFlow: a kernel start and a few lines
each), so the whole file takes well under a minute.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from cflkit.study import batch
from cflkit.study.batch import Entry, expand, parse_experiment, run_key

ROOT = Path(__file__).resolve().parents[1]

PARAMETERS = '''x: int = 1  # the input
fail: bool = False  # raise instead of finishing
block: str = ""  # while this file exists, wait (to kill the batch mid-run)
counter: str = ""  # append x here when the run finishes (to count executions)
out_dir: str = "out"  # where the result goes'''
BODY = '''import pathlib, time
if fail:
    raise RuntimeError(f"run x={x} was asked to fail")
while block and pathlib.Path(block).exists():
    time.sleep(0.2)
out = pathlib.Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "result.csv").write_text(f"x,square\\n{x},{x * x}\\n")
if counter:
    with open(counter, "a") as f:
        f.write(f"{x}\\n")'''


def tiny_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def write_experiment(tmp_path: Path, runs: list, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "timeout": 120, "runs": runs}))
    return path


def cli(*argv) -> int:
    from cflkit.cli import main

    return main(["batch", *map(str, argv)])


# ---------------------------------------------------------------- pure parts

def test_grid_expands_to_a_product_with_lists_kept_and_overrides_applied():
    entry = Entry("e", Path("nb.ipynb"), parameters={"methods": ["a", "b"], "rounds": 2},
                  grid={"seed": [0, 1], "scenario": ["s", "t"]},
                  overrides=({"when": {"scenario": "t", "seed": 1}, "set": {"rounds": 9}},))
    points = expand(entry)
    assert [(p["seed"], p["scenario"]) for p in points] == [(0, "s"), (0, "t"), (1, "s"), (1, "t")]
    assert all(p["methods"] == ["a", "b"] for p in points), "a fixed list is one value, not a grid axis"
    assert [p["rounds"] for p in points] == [2, 2, 2, 9], "the override hits exactly the matching point"
    assert expand(Entry("e", Path("nb.ipynb"), parameters={"x": 1})) == [{"x": 1}], "no grid: one run"


def test_entry_parameters_override_the_file_defaults():
    exp = parse_experiment({"parameters": {"workers": 1, "rounds": 5},
                            "runs": [{"name": "a", "notebook": "a.ipynb", "parameters": {"rounds": 7}},
                                     {"name": "b", "notebook": "b.ipynb"}]})
    assert [e.parameters for e in exp.entries] == [{"workers": 1, "rounds": 7}, {"workers": 1, "rounds": 5}]


def test_run_key_depends_on_notebook_and_parameters_not_on_their_order():
    k = run_key(b"nb", {"a": 1, "b": [1, 2]})
    assert k == run_key(b"nb", {"b": [1, 2], "a": 1})
    assert k != run_key(b"nb2", {"a": 1, "b": [1, 2]})
    assert k != run_key(b"nb", {"a": 1, "b": [2, 1]})
    assert len(k) == 12 and int(k, 16) >= 0


@pytest.mark.parametrize("data, message", [
    ({"runs": [{"name": "a", "notebook": "a.ipynb", "grdi": {}}]}, "unknown key 'grdi'"),
    ({"runs": [{"name": "a", "notebook": "a.ipynb", "grid": {"seed": 3}}]}, "must be a non-empty list"),
    ({"runs": [{"name": "a", "notebook": "a.ipynb", "parameters": {"out_dir": "x"}}]}, "set by the batch runner"),
    ({"runs": [{"name": "a", "notebook": "a.ipynb"}, {"name": "a", "notebook": "b.ipynb"}]}, "used twice"),
    ({"runs": []}, "non-empty list"),
    ({"runs": [{"notebook": "a.ipynb"}]}, "has no 'name'"),
])
def test_malformed_experiment_files_are_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        parse_experiment(data)


def test_same_run_twice_and_missing_notebook_are_errors(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    twice = parse_experiment({"runs": [{"name": "a", "notebook": str(nb), "grid": {"x": [1, 2]},
                                        "overrides": [{"when": {"x": 2}, "set": {"x": 1}}]}]})
    with pytest.raises(ValueError, match="same run"):
        batch.plan(twice)
    missing = parse_experiment({"runs": [{"name": "a", "notebook": str(tmp_path / "nope.ipynb")}]})
    with pytest.raises(ValueError, match="does not exist"):
        batch.plan(missing)


def test_dry_run_lists_every_run_and_runs_nothing(tmp_path, capsys):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = write_experiment(tmp_path, [{"name": "sq", "notebook": str(nb), "grid": {"x": [1, 2, 3]}},
                                      {"name": "other", "notebook": str(nb)}])
    assert cli(exp, "--dry-run", "--runs", tmp_path / "runs") == 0
    out = capsys.readouterr().out
    assert all(f"sq[x={x}]" in out for x in (1, 2, 3)) and "other" in out
    assert "4 runs: 0 done, 0 failed, 4 to do" in out
    assert not (tmp_path / "runs").exists()
    assert cli(exp, "--dry-run", "--only", "sq*", "--runs", tmp_path / "runs") == 0
    assert "3 runs:" in capsys.readouterr().out
    assert cli(exp, "--dry-run", "--only", "nothing*") == 2  # a pattern matching nothing is a usage error


# ---------------------------------------------------------------- executing notebooks

@pytest.mark.notebook
def test_runs_complete_and_a_second_batch_does_nothing(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    counter = tmp_path / "counter.txt"
    exp = batch.load_experiment(write_experiment(tmp_path, [{
        "name": "sq", "notebook": str(nb), "parameters": {"counter": str(counter)}, "grid": {"x": [1, 2, 3]},
        "tables": ["result.csv"]}]))
    root = tmp_path / "runs"
    chosen, statuses = batch.run_batch(exp, workers=2, root=root)
    assert sorted(s["status"] for s in statuses) == ["done"] * 3
    index = pd.read_csv(root / "t" / "index.csv")
    assert list(index["status"]) == ["done"] * 3 and index["key"].is_unique
    for row in index.itertuples():
        run_dir = Path(row.path)
        x = json.loads(row.parameters)["x"]
        assert pd.read_csv(run_dir / "out" / "result.csv").loc[0, "square"] == x * x
        executed = nbformat.read(run_dir / "executed.ipynb", as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
        assert json.loads((run_dir / "params.json").read_text()) == json.loads(row.parameters)
        assert (run_dir / "run.log").stat().st_size > 0
        assert json.loads(row.versions)["papermill"] and row.wall_seconds > 0
    assert sorted(counter.read_text().split()) == ["1", "2", "3"]
    assert not list((root / "t" / ".tmp").iterdir())

    _, again = batch.run_batch(exp, workers=2, root=root)
    assert again == [], "finished runs are never run twice"
    assert sorted(counter.read_text().split()) == ["1", "2", "3"]


@pytest.mark.notebook
def test_one_failing_run_does_not_stop_the_others_and_is_reported(tmp_path, capsys):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = write_experiment(tmp_path, [
        {"name": "sq", "notebook": str(nb), "grid": {"x": [1, 2]}, "tables": ["result.csv"]},
        {"name": "boom", "notebook": str(nb), "parameters": {"fail": True}},
        {"name": "incomplete", "notebook": str(nb), "tables": ["result.csv", "missing.csv"]}])
    root = tmp_path / "runs"
    assert cli(exp, "--workers", "2", "--runs", root, "--no-progress") == 1
    err = capsys.readouterr().err
    index = pd.read_csv(root / "t" / "index.csv").set_index("label")
    assert list(index.loc[["sq[x=1]", "sq[x=2]"], "status"]) == ["done", "done"]
    assert index.loc["boom", "status"] == "failed" and "asked to fail" in index.loc["boom", "error"]
    assert index.loc["incomplete", "status"] == "failed" and "missing.csv" in index.loc["incomplete", "error"]
    for label in ("boom", "incomplete"):
        executed = Path(index.loc[label, "executed"])
        assert executed.parent.parent.name == "failed" and executed.is_file()
        assert f"FAILED {label}" in err and str(executed) in err
    # a failed run is never taken for done: the next batch retries exactly the failed ones
    _, statuses = batch.run_batch(batch.load_experiment(exp), workers=1, root=root)
    assert sorted(s["label"] for s in statuses) == ["boom", "incomplete"]


@pytest.mark.notebook
def test_a_killed_batch_resumes_without_lost_or_duplicated_results(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    block = tmp_path / "block"
    block.write_text("x=3 waits while this file exists")
    counter = tmp_path / "counter.txt"
    exp_path = write_experiment(tmp_path, [{
        "name": "sq", "notebook": str(nb), "grid": {"x": [1, 2, 3, 4]}, "tables": ["result.csv"],
        "parameters": {"counter": str(counter)},
        "overrides": [{"when": {"x": 3}, "set": {"block": str(block)}}]}])
    root = tmp_path / "runs"
    exp_dir = root / "t"
    proc = subprocess.Popen([sys.executable, "-m", "cflkit", "batch", str(exp_path), "--workers", "2",
                             "--runs", str(root), "--no-progress"], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # three runs done, x=3 stuck in the middle of its notebook
            done = [p for p in exp_dir.glob("sq-*") if (p / "status.json").is_file()]
            started = [p for p in (exp_dir / ".tmp").glob("sq-*")] if (exp_dir / ".tmp").is_dir() else []
            if len(done) == 3 and started:
                break
            assert proc.poll() is None, "the batch ended before it could be killed"
            time.sleep(0.3)
        else:
            pytest.fail("the batch did not reach the blocked run in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch, its workers and their kernels
        proc.wait()
    before = {p.name: json.loads((p / "status.json").read_text())["started"] for p in done}
    assert sorted(counter.read_text().split()) == ["1", "2", "4"]
    exp = batch.load_experiment(exp_path)
    assert [batch.run_status(r, exp_dir) for r in batch.plan(exp)] == ["done", "done", "interrupted", "done"], \
        "the interrupted run must not look done (nor running: its worker is dead)"

    block.unlink()
    _, statuses = batch.run_batch(exp, workers=2, root=root)
    assert [s["label"] for s in statuses] == ["sq[x=3]"], "only the interrupted run is executed again"
    after = {p.name: json.loads((p / "status.json").read_text())["started"] for p in exp_dir.glob("sq-*")}
    assert len(after) == 4 and all(after[name] == started for name, started in before.items())
    assert sorted(counter.read_text().split()) == ["1", "2", "3", "4"], "each run finished exactly once"
    index = pd.read_csv(exp_dir / "index.csv")
    assert len(index) == 4 and index["key"].is_unique and (index["status"] == "done").all()
    assert not list((exp_dir / ".tmp").iterdir()) and not (exp_dir / "failed").exists()


def test_batch_cli_is_registered_without_heavy_imports():
    code = ("import sys; from cflkit.cli import _parser; _parser(); "
            "print(sorted(m for m in ('tensorflow', 'papermill', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_entry_whose_dataset_files_are_missing_is_skipped_with_a_note(tmp_path, capsys, caplog, monkeypatch):
    import cflkit.data as data

    real = data.source_status
    monkeypatch.setattr(data, "source_status", lambda key: ("missing", 0) if key == "mnist" else real(key))
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = write_experiment(tmp_path, [{"name": "here", "notebook": str(nb), "requires": ["digits"]},
                                      {"name": "gone", "notebook": str(nb), "requires": ["mnist"]}])
    assert cli(exp, "--dry-run", "--runs", tmp_path / "runs") == 0
    captured = capsys.readouterr()
    assert "1 runs: 0 done, 0 failed, 1 to do" in captured.out and "gone" not in captured.out
    assert "entry 'gone' skipped: dataset mnist not found in CFLKIT_OFFLINE_DIRS or the cache" in caplog.text
    assert batch.missing_data(["digits", "breast_cancer", "mnist"]) == ["mnist"]


def test_requires_names_known_datasets():
    with pytest.raises(ValueError, match="requires: unknown dataset 'mnits'; choose one of: digits"):
        parse_experiment({"runs": [{"name": "a", "notebook": "a.ipynb", "requires": ["mnits"]}]})
    with pytest.raises(ValueError, match="requires must be a list of dataset names"):
        parse_experiment({"runs": [{"name": "a", "notebook": "a.ipynb", "requires": "mnist"}]})


@pytest.mark.notebook
def test_kernels_get_their_share_of_the_cores_unless_the_user_sized_them(tmp_path, monkeypatch):
    """Kernels side by side each with TensorFlow's default pools (every core) oversubscribe the
    CPU (1.9x slower at 2 on 2 cores: bench/cell_throughput.py): each gets cores // workers."""
    from cflkit.study.compare import available_cores

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('x: int = 1\nout_dir: str = "out"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(
                    'import os, pathlib\npathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n'
                    '(pathlib.Path(out_dir) / "env.txt").write_text(os.environ.get("TF_NUM_INTRAOP_THREADS", "") + ","'
                    ' + os.environ.get("TF_NUM_INTEROP_THREADS", ""))')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "env.ipynb")
    for name in batch.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    exp = batch.load_experiment(write_experiment(tmp_path, [
        {"name": "env", "notebook": str(tmp_path / "env.ipynb"), "grid": {"x": [1, 2]}, "tables": ["env.txt"]}]))
    share = str(max(1, available_cores() // 2))
    _, statuses = batch.run_batch(exp, workers=2, root=tmp_path / "shared")
    assert {(Path(s["path"]) / "out" / "env.txt").read_text() for s in statuses} == {f"{share},{share}"}
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    _, statuses = batch.run_batch(exp, workers=2, root=tmp_path / "user")
    assert {(Path(s["path"]) / "out" / "env.txt").read_text() for s in statuses} == {f"3,{share}"}
