"""``cflkit batch`` and the article builder on bad input and interrupted work.

Bad experiment files are refused in one line before anything runs; nothing is deleted outside
the experiment's directory; a ``kill -9`` of the batch leaves no worker or kernel behind and a
stale-free index; the article builder deletes only the files its own manifest lists.
Only the kill test executes notebooks (the tiny one of test_batch.py).
"""
import fcntl
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
from test_batch import cli, tiny_notebook, write_experiment

from cflkit.article import builder as P
from cflkit.core.processes import pid_alive
from cflkit.study import batch
from cflkit.study.batch import Experiment, parse_experiment

TYPED = '''clients: int = 16
lr: float = 0.1
dataset: str = "digits"
flag: bool = False
seeds: list = [0, 1]
weights: Optional[int] = None
free = 3
out_dir: str = "out"'''


def typed_notebook(path: Path, parameters: str = TYPED) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(clients)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def plan_of(data: dict, path: Path = Path("exp.yaml")):
    return batch.plan(parse_experiment(data, path))


# ---------------------------------------------------------------- names and paths

@pytest.mark.parametrize("name", ["/abs/path", "../x", "..", ".hidden", "a/b", "a b", True, ["a"]])
def test_an_experiment_name_that_is_not_a_plain_name_is_refused(name):
    with pytest.raises(ValueError, match=r"exp.yaml: name .* must be a plain name: letters, digits"):
        parse_experiment({"name": name, "runs": [{"name": "a", "notebook": "a.ipynb"}]}, Path("exp.yaml"))


def test_plain_names_pass_and_a_bad_file_stem_is_named():
    assert parse_experiment({"name": "paper-full_2.v1", "runs": [{"name": "a", "notebook": "a.ipynb"}]}).name \
        == "paper-full_2.v1"
    assert parse_experiment({"name": 2024, "runs": [{"name": "a", "notebook": "a.ipynb"}]}).name == "2024"
    with pytest.raises(ValueError, match=r"from the file's name; set 'name:'\) 'my exp'"):
        parse_experiment({"runs": [{"name": "a", "notebook": "a.ipynb"}]}, Path("my exp.yaml"))
    with pytest.raises(ValueError, match="experiment name '../x' must be a plain name"):
        batch.batch_dir(Experiment("../x", Path("x.yaml"), ()), "runs")  # built in code, not read from a file


@pytest.mark.parametrize("key, value, message", [
    ("name", "../e", r"runs\[0\]: entry name '../e' must be a plain name"),
    ("figures", ["../../evil"], r"runs\[0\].figures\[0\] '../../evil' must be a plain name"),
    ("figures", "ari_heatmap", r"runs\[0\].figures must be a list of file names"),
    ("tables", ["../x.csv"], r"runs\[0\].tables\[0\] '../x.csv' must be a relative path"),
    ("tables", ["/etc/passwd"], r"runs\[0\].tables\[0\] '/etc/passwd' must be a relative path"),
    ("notebook", ["a.ipynb"], r"runs\[0\].notebook must be a path"),
])
def test_entry_names_figures_tables_and_notebooks_are_checked(key, value, message):
    with pytest.raises(ValueError, match=message):
        parse_experiment({"runs": [{"name": "a", "notebook": "a.ipynb", key: value}]})


def test_nothing_is_deleted_through_a_link_out_of_the_experiment_directory(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = batch.load_experiment(write_experiment(tmp_path, [{"name": "sq", "notebook": str(nb)}]))
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    exp_dir = tmp_path / "runs" / "t"
    exp_dir.mkdir(parents=True)
    (exp_dir / ".tmp").symlink_to(victim)
    with pytest.raises(RuntimeError, match="refusing to delete or replace .*outside"):
        batch.run_batch(exp, root=tmp_path / "runs")
    assert (victim / "thesis.tex").read_text() == "years of work"


def test_a_run_spec_pointing_outside_the_experiment_directory_is_refused_before_anything(tmp_path):
    exp_dir = tmp_path / "runs" / "t"
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    spec = {"exp_dir": str(exp_dir), "tmp": str(exp_dir / ".tmp" / "sq-0.abcd"), "final": str(victim),
            "failed": str(exp_dir / "failed" / "sq-0")}
    for key, value in (("final", str(victim)), ("tmp", str(exp_dir / ".tmp" / ".." / ".." / "..")),
                       ("failed", str(exp_dir / "failed" / ".." / ".." / "elsewhere"))):
        with pytest.raises(RuntimeError, match="outside"):
            batch.execute({**spec, "final": str(exp_dir / "sq-0"), key: value})
    assert (victim / "keep.txt").read_text() == "keep" and not exp_dir.exists()


# ---------------------------------------------------------------- timeouts, workers

@pytest.mark.parametrize("value", ["abc", 0, -5, True, 1.5, "1800", None])
@pytest.mark.parametrize("level", ["file", "entry"])
def test_a_timeout_that_is_not_a_positive_integer_is_refused_naming_the_field(value, level):
    entry = {"name": "a", "notebook": "a.ipynb", **({"timeout": value} if level == "entry" else {})}
    data = {"runs": [entry], **({"timeout": value} if level == "file" else {})}
    field = "runs[0].timeout" if level == "entry" else "timeout"
    with pytest.raises(ValueError) as e:
        parse_experiment(data, Path("exp.yaml"))
    assert str(e.value) == f"exp.yaml: {field} must be a positive integer number of seconds, got {value!r}"


def test_workers_below_one_is_a_one_line_usage_error(tmp_path, capsys):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = write_experiment(tmp_path, [{"name": "sq", "notebook": str(nb)}])
    assert cli(exp, "--workers", "0", "--runs", tmp_path / "runs") == 2
    assert capsys.readouterr().err == "cflkit: error: --workers must be at least 1, got 0\n"
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got -1"):
        batch.run_batch(batch.load_experiment(exp), workers=-1, root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- parameters against the notebook

def test_a_parameter_the_notebook_does_not_declare_is_refused_before_any_run(tmp_path, capsys):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = write_experiment(tmp_path, [{"name": "ok", "notebook": str(nb)},
                                      {"name": "sq", "notebook": str(nb), "parameters": {"y": 3}}])
    assert cli(exp, "--runs", tmp_path / "runs", "--no-progress") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "runs[1].parameters.y (entry 'sq')" in err and "declares no parameter 'y'" in err
    assert "its parameters: x, fail, block, counter, out_dir" in err
    assert not (tmp_path / "runs").exists(), "refused before anything ran"


@pytest.mark.parametrize("entry, field", [
    ({"grid": {"xx": [1, 2]}}, r"runs\[0\].grid.xx \(entry 'sq'\)"),
    ({"grid": {"x": [1, 2]}, "overrides": [{"when": {"x": 2}, "set": {"roundz": 9}}]},
     r"runs\[0\].overrides\[0\].set.roundz"),
    ({"grid": {"x": [1, 2]}, "overrides": [{"when": {"xx": 2}, "set": {"x": 9}}]},
     r"runs\[0\].overrides\[0\].when.xx"),
])
def test_grid_keys_and_override_keys_must_be_declared_too(tmp_path, entry, field):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    with pytest.raises(ValueError, match=field + r".*declares no parameter"):
        plan_of({"runs": [{"name": "sq", "notebook": str(nb), **entry}]})


def test_an_override_that_matches_no_grid_point_is_refused(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    with pytest.raises(ValueError, match=r"runs\[0\].overrides\[0\]: when \{'x': 5\} matches no grid point"):
        plan_of({"runs": [{"name": "sq", "notebook": str(nb), "grid": {"x": [1, 2]},
                           "overrides": [{"when": {"x": 5}, "set": {"fail": True}}]}]})


def test_a_notebook_without_out_dir_or_without_a_parameters_cell_is_refused(tmp_path):
    without = typed_notebook(tmp_path / "a.ipynb", "clients: int = 16")
    with pytest.raises(ValueError, match="declares no parameter 'out_dir', which the batch sets"):
        plan_of({"runs": [{"name": "a", "notebook": str(without)}]})
    bare = nbformat.v4.new_notebook()
    bare.cells = [nbformat.v4.new_code_cell("out_dir = 'out'")]
    nbformat.write(bare, tmp_path / "bare.ipynb")
    with pytest.raises(ValueError, match=r"its parameters: none \(it has no cell tagged 'parameters'\)"):
        plan_of({"runs": [{"name": "a", "notebook": str(tmp_path / "bare.ipynb"), "parameters": {"x": 1}}]})


def test_names_that_papermills_line_parser_skips_still_count_as_declared(tmp_path):
    nb = typed_notebook(tmp_path / "nb.ipynb", 'out_dir: str = "out"\noptions = dict(a=1)')
    assert plan_of({"runs": [{"name": "a", "notebook": str(nb), "parameters": {"options": {"a": 2}}}]})


def test_file_defaults_go_only_to_notebooks_that_declare_them(tmp_path):
    tiny, typed = tiny_notebook(tmp_path / "tiny.ipynb"), typed_notebook(tmp_path / "typed.ipynb")
    runs = plan_of({"parameters": {"clients": 4}, "runs": [{"name": "a", "notebook": str(tiny)},
                                                          {"name": "b", "notebook": str(typed)}]})
    assert [r.parameters for r in runs] == [{}, {"clients": 4}]
    assert runs[0].key == plan_of({"runs": [{"name": "a", "notebook": str(tiny)}]})[0].key
    with pytest.raises(ValueError, match=r"parameters.clientz: no notebook of this file declares it"):
        plan_of({"parameters": {"clientz": 4}, "runs": [{"name": "a", "notebook": str(typed)}]})


@pytest.mark.parametrize("entry, message", [
    ({"parameters": {"clients": "four"}}, r"runs\[1\].parameters.clients must be int, as notebook .* declares "
                                          r"'clients: int' \(entry 'bad'\); got 'four' \(str\)"),
    ({"grid": {"clients": [1, 2, "three"]}}, r"runs\[1\].grid.clients\[2\] must be int"),
    ({"parameters": {"clients": True}}, r"runs\[1\].parameters.clients must be int.*got True \(bool\)"),
    ({"parameters": {"clients": 2.0}}, r"runs\[1\].parameters.clients must be int.*got 2.0 \(float\)"),
    ({"parameters": {"lr": "1e-3"}}, r"must be float.*YAML reads this as text"),
    ({"parameters": {"lr": False}}, r"runs\[1\].parameters.lr must be float"),
    ({"parameters": {"dataset": 3}}, r"runs\[1\].parameters.dataset must be str"),
    ({"parameters": {"flag": 1}}, r"runs\[1\].parameters.flag must be bool"),
    ({"parameters": {"seeds": 0}}, r"runs\[1\].parameters.seeds must be list"),
    ({"grid": {"dataset": ["a", "b"]}, "overrides": [{"when": {"dataset": "b"}, "set": {"clients": "many"}}]},
     r"runs\[1\].overrides\[0\].set.clients must be int"),
])
def test_a_value_that_does_not_fit_the_notebooks_annotation_is_refused_naming_the_field(tmp_path, entry, message):
    nb = typed_notebook(tmp_path / "nb.ipynb")
    with pytest.raises(ValueError, match=message):
        plan_of({"runs": [{"name": "good", "notebook": str(nb)}, {"name": "bad", "notebook": str(nb), **entry}]})


def test_values_that_fit_pass_and_unknown_annotations_are_not_checked(tmp_path):
    nb = typed_notebook(tmp_path / "nb.ipynb")
    runs = plan_of({"runs": [{"name": "a", "notebook": str(nb), "grid": {"lr": [1, 0.5]},
                              "parameters": {"clients": 3, "dataset": "x", "flag": True, "seeds": [1],
                                             "weights": "anything", "free": [1, "x"]}}]})
    assert [r.parameters["lr"] for r in runs] == [1, 0.5], "an int is a fine float"
    with pytest.raises(ValueError, match=r"^exp.yaml: parameters.clients must be int.*entry 'a'"):
        plan_of({"parameters": {"clients": "x"}, "runs": [{"name": "a", "notebook": str(nb)}]})


def test_the_repositorys_experiment_files_pass_the_checks():
    for name in ("paper.yaml", "paper-full.yaml"):
        exp = batch.load_experiment(Path(__file__).resolve().parents[1] / "experiments" / name)
        cwd = os.getcwd()
        try:
            os.chdir(Path(__file__).resolve().parents[1])
            assert batch.plan(exp)
        finally:
            os.chdir(cwd)


# ---------------------------------------------------------------- locks, statuses, leftovers

def test_a_worker_of_an_earlier_batch_keeps_the_experiment_locked(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "WORKERS_GRACE_S", 0.5)
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = batch.load_experiment(write_experiment(tmp_path, [{"name": "sq", "notebook": str(nb)}]))
    exp_dir = tmp_path / "runs" / "t"
    exp_dir.mkdir(parents=True)
    with open(exp_dir / ".lock-workers", "a") as survivor:  # what a surviving worker holds
        fcntl.flock(survivor, fcntl.LOCK_SH)
        with pytest.raises(RuntimeError, match="workers of an earlier batch .* are still running"):
            batch.run_batch(exp, root=tmp_path / "runs")
    with open(exp_dir / ".lock", "a") as other:  # another batch
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another batch is running"):
            batch.run_batch(exp, root=tmp_path / "runs")


def test_workers_of_a_batch_killed_just_now_are_waited_for(tmp_path):
    """A killed batch's workers release their lock when the kernel reaps them, a moment after the
    kill: a batch restarted at once waits for that (up to WORKERS_GRACE_S) instead of refusing."""
    import threading

    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = batch.load_experiment(write_experiment(tmp_path, [{"name": "sq", "notebook": str(nb)}]))
    exp_dir = tmp_path / "runs" / "t"
    exp_dir.mkdir(parents=True)
    dying = open(exp_dir / ".lock-workers", "a")
    fcntl.flock(dying, fcntl.LOCK_SH)
    threading.Timer(1.0, dying.close).start()  # the worker is gone one second later
    _, statuses = batch.run_batch(exp, root=tmp_path / "runs")
    assert dying.closed and [s["status"] for s in statuses] == ["done"]


def _fake_tmp(exp_dir: Path, run, pid: int, start) -> Path:
    tmp = exp_dir / ".tmp" / f"{run.dirname}.0123abcd"
    tmp.mkdir(parents=True)
    (tmp / "owner.json").write_text(json.dumps({"pid": pid, "start": start}))
    return tmp


def test_runs_in_tmp_are_running_or_interrupted_by_their_workers_life_and_dry_run_rewrites_the_index(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp_path = write_experiment(tmp_path, [{"name": "sq", "notebook": str(nb), "grid": {"x": [1, 2, 3]}}])
    runs = batch.plan(batch.load_experiment(exp_path))
    exp_dir = tmp_path / "runs" / "t"
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = os.getpid()
    _fake_tmp(exp_dir, runs[0], me, batch._start_time(me))
    _fake_tmp(exp_dir, runs[1], dead.pid, batch._start_time(me))
    _fake_tmp(exp_dir, runs[2], me, "1")  # this pid, but another process's start time: a reused pid
    assert [batch.run_status(r, exp_dir) for r in runs] == ["running", "interrupted", "interrupted"]
    (exp_dir / "index.csv").write_text("entry,status\nsq,running\n")  # stale, as a killed batch leaves it
    assert cli(exp_path, "--dry-run", "--runs", tmp_path / "runs") == 0
    index = pd.read_csv(exp_dir / "index.csv")
    assert list(index["status"]) == ["running", "interrupted", "interrupted"]
    assert Path(index.loc[1, "path"]).parent.name == ".tmp"


def test_a_new_batch_ends_processes_left_with_its_experiments_mark(tmp_path):
    exp_dir = tmp_path / "runs" / "t"
    exp_dir.mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    orphan = subprocess.Popen(sleeper, env={**os.environ, batch.ENV_MARK: str(exp_dir.resolve())})
    other = subprocess.Popen(sleeper, env={**os.environ, batch.ENV_MARK: str(tmp_path / "runs" / "other")})
    try:
        deadline = time.time() + 10
        while orphan.pid not in batch.marked_processes(exp_dir) and time.time() < deadline:
            time.sleep(0.05)
        batch._end_leftovers(exp_dir)
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert other.poll() is None, "another experiment's processes are left alone"
    finally:
        for p in (orphan, other):
            p.kill()
            p.wait()


# ---------------------------------------------------------------- kill -9 of a real batch

def _ppids() -> dict:
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            found[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return found


def _processes_of(batch_pid: int, exp_dir: Path) -> dict:
    """{pid: start time} of the batch's descendants and of the processes with its experiment's mark."""
    ppids = _ppids()
    found, frontier = set(), {batch_pid}
    while frontier:
        frontier = {pid for pid, ppid in ppids.items() if ppid in frontier} - found
        found |= frontier
    found |= set(batch.marked_processes(exp_dir))
    return {pid: batch._start_time(pid) for pid in found}


def _alive(procs: dict) -> list[int]:
    return [pid for pid, start in procs.items() if pid_alive(pid) and batch._start_time(pid) == start]


@pytest.mark.notebook
def test_kill_9_of_the_batch_leaves_no_worker_or_kernel_and_a_rerun_runs_each_run_once(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    block, counter = tmp_path / "block", tmp_path / "counter.txt"
    block.write_text("x=2 and x=3 wait while this file exists")
    exp_path = write_experiment(tmp_path, [{
        "name": "sq", "notebook": str(nb), "grid": {"x": [1, 2, 3, 4]}, "tables": ["result.csv"],
        "parameters": {"counter": str(counter)},
        "overrides": [{"when": {"x": 2}, "set": {"block": str(block)}},
                      {"when": {"x": 3}, "set": {"block": str(block)}}]}])
    root, exp_dir = tmp_path / "runs", tmp_path / "runs" / "t"
    command = [str(Path(sys.executable).with_name("cflkit")), "batch", str(exp_path), "--workers", "2",
               "--runs", str(root), "--no-progress"]
    proc = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # x=1 done; x=2 and x=3 blocked in their kernels, one per worker
            runs = batch.plan(batch.load_experiment(exp_path))
            states = [batch.run_status(r, exp_dir) for r in runs]
            kernels = batch.marked_processes(exp_dir)
            if states == ["done", "running", "running", "todo"] and len(kernels) >= 2:
                break
            assert proc.poll() is None, "the batch ended before it could be killed"
            time.sleep(0.3)
        else:
            pytest.fail(f"the batch did not reach the blocked runs in time: {states}")
        procs = _processes_of(proc.pid, exp_dir)
        assert len(procs) >= 4, f"expected two workers and two kernels, found {procs}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the batch alone: its workers and kernels must follow by themselves
        proc.wait()
    deadline = time.time() + 6
    while _alive(procs) and time.time() < deadline:
        time.sleep(0.1)
    left = _alive(procs)
    for pid in left:  # so that a failure here leaves nothing running
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the killed batch still run: {left}"

    assert cli(exp_path, "--dry-run", "--runs", root) == 0  # the index is rewritten from the run directories
    index = pd.read_csv(exp_dir / "index.csv")
    assert list(index["status"]) == ["done", "interrupted", "interrupted", "todo"]
    assert sorted(counter.read_text().split()) == ["1"], "no orphan finished queued work"

    block.unlink()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(counter.read_text().split()) == ["1", "2", "3", "4"], "each run finished exactly once"
    index = pd.read_csv(exp_dir / "index.csv")
    assert (index["status"] == "done").all() and index["key"].is_unique
    assert not list((exp_dir / ".tmp").iterdir())


# ---------------------------------------------------------------- the article builder

PDF = b"%PDF-1.4\n1 0 obj << /Type /Page /MediaBox [0 0 252 180] >> endobj\n%%EOF\n"


def _paper_experiment(tmp_path: Path, figures: list, paper: Path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "paper": {"dir": str(paper)},
                                    "runs": [{"name": "extra", "notebook": str(nb), "figures": figures}]}))
    exp = batch.load_experiment(path)
    for run in batch.plan(exp):  # a finished run, as the batch leaves it
        out = tmp_path / "runs" / "t" / run.dirname / "out"
        out.mkdir(parents=True, exist_ok=True)
        (out.parent / "status.json").write_text("{}")
        for fig in figures:
            (out / f"{fig}.pdf").write_bytes(PDF)
    return exp


def test_aggregation_deletes_only_its_own_stale_files_never_a_users(tmp_path):
    paper = tmp_path / "paper"
    (paper / "figures").mkdir(parents=True)
    (paper / "tables").mkdir()
    mine = {paper / "figures" / "my_plot.pdf": PDF, paper / "tables" / "notes.tex": b"my notes",
            paper / "main.tex": b"\\documentclass{article}"}
    for path, data in mine.items():
        path.write_bytes(data)
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(PDF)

    written = P.aggregate(_paper_experiment(tmp_path, ["plot"], paper), root=tmp_path / "runs")
    assert paper / "figures" / "extra_plot.pdf" in written
    manifest = json.loads((paper / P.MANIFEST).read_text())["files"]
    assert "figures/extra_plot.pdf" in manifest and "macros.tex" in manifest
    assert not any(name in manifest for name in ("figures/my_plot.pdf", "tables/notes.tex", "main.tex"))

    # a later aggregation no longer makes extra_plot.pdf: that stale output goes, the user's files stay
    P.aggregate(_paper_experiment(tmp_path, ["plot2"], paper), root=tmp_path / "runs")
    assert not (paper / "figures" / "extra_plot.pdf").exists()
    assert (paper / "figures" / "extra_plot2.pdf").is_file()
    assert all(path.read_bytes() == data for path, data in mine.items())

    # a manifest entry pointing outside the paper directory is never followed
    (paper / P.MANIFEST).write_text(json.dumps({"files": ["../outside.pdf", str(outside), "figures/my_plot.pdf/.."]}))
    P.aggregate(_paper_experiment(tmp_path, ["plot2"], paper), root=tmp_path / "runs", force=True)
    assert outside.read_bytes() == PDF and all(path.read_bytes() == data for path, data in mine.items())


@pytest.mark.parametrize("value, ok", [
    ("paper", True), ("build/paper", True), ("../nonexistent-paper-dir", False), ("/nonexistent/abs/paper", False),
    ("", False), (5, False), (None, False),
])
def test_paper_dir_is_relative_without_dotdot_or_an_existing_directory(value, ok):
    data = {"paper": {"dir": value}, "runs": [{"name": "a", "notebook": "a.ipynb"}]}
    if ok:
        assert P.paper_dir(P.check_paper(parse_experiment(data))) == Path(value)
    else:
        with pytest.raises(ValueError, match="paper.dir"):
            P.check_paper(parse_experiment(data))


def test_an_existing_absolute_paper_dir_is_accepted_and_unknown_paper_keys_are_refused(tmp_path):
    data = {"paper": {"dir": str(tmp_path)}, "runs": [{"name": "a", "notebook": "a.ipynb"}]}
    assert P.paper_dir(P.check_paper(parse_experiment(data))) == tmp_path
    with pytest.raises(ValueError, match="unknown key 'dri' in .*paper; choose from: dir, round_time"):
        P.check_paper(parse_experiment({"paper": {"dri": "paper"}, "runs": [{"name": "a", "notebook": "a.ipynb"}]}))


def test_a_corrupt_status_file_is_reported_in_the_index_not_raised(tmp_path):
    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp_path = write_experiment(tmp_path, [{"name": "sq", "notebook": str(nb), "grid": {"x": [1, 2]}}])
    runs = batch.plan(batch.load_experiment(exp_path))
    exp_dir = tmp_path / "runs" / "t"
    for run, text in zip(runs, ("{not json", "[1, 2]")):
        (exp_dir / run.dirname).mkdir(parents=True)
        (exp_dir / run.dirname / "status.json").write_text(text)
    index = batch.index_table(runs, exp_dir)
    assert list(index["status"]) == ["done", "done"]
    assert index.loc[0, "error"].startswith("unreadable ") and "not a JSON object" in index.loc[1, "error"]
