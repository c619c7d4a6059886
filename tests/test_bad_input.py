"""Bad input, as a new user types it: every case ends with one line on stderr that names the
bad value, exit code 2 (1 for a failure of the machine, not of the input), no traceback,
and nothing written or changed on disk.

:data:`CASES` is the list the closing note of the robustness issue counts; the cases that
need a special machine (a full or read-only device) are in ``test_outputs.py``.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from cflkit.cli import main
from cflkit.core.outputs import write_manifest

TINY = ["--dataset", "digits", "--clients", "4", "--groups", "2", "--rounds", "1", "--local_epochs", "1"]
BATCH_NOTEBOOK = {
    "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
               "source": "clients: int = 4  # clients\nout_dir: str = 'out'  # where files go\n"}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding what the cases point at: a finished run, corrupted copies of it,
    a user's file and folder, a report directory, a link, experiment files."""
    root = tmp_path_factory.mktemp("workspace")
    run = root / "RUN"
    assert main(["run", *TINY, "--out", str(run), "--no-progress"]) == 0
    (root / "notes.txt").write_text("a user's file")
    (root / "thesis").mkdir()
    (root / "thesis" / "chapter1.tex").write_text("precious")
    (root / "analysis").mkdir()  # a user's folder holding files with the names a grid and the demo write
    for name in ("results.csv", "comparison.txt", "pyproject.toml"):
        (root / "analysis" / name).write_text("mine")
    report = root / "REPORT"
    report.mkdir()
    (report / "report.md").write_text("# an earlier report")
    write_manifest(report, "explain")
    os.symlink(root / "thesis", root / "link")
    with_report = root / "RUN_WITH_REPORT"
    shutil.copytree(run, with_report)
    (with_report / "explain").mkdir()
    (with_report / "explain" / "report.md").write_text("# report")
    (with_report / "explain" / "quality.json").write_text("{}")  # as written before reports had manifests
    for name, change in {
        "RUN_TRUNCATED": lambda p: (p / "models.npz").write_bytes((p / "models.npz").read_bytes()[:200]),
        "RUN_CONFIG_LIST": lambda p: (p / "config.json").write_text("[1, 2, 3]\n"),
        "RUN_CONFIG_UTF8": lambda p: (p / "config.json").write_bytes(b'{"method": "fed\xff\xfeavg"}'),
        "RUN_CONFIG_BROKEN": lambda p: (p / "config.json").write_text('{"method": "fedavg", "rounds": '),
        "RUN_CONFIG_BOOL": lambda p: (p / "config.json").write_text(
            json.dumps({**json.loads((run / "config.json").read_text()), "groups": True})),
        "RUN_SUMMARY_BROKEN": lambda p: (p / "summary.json").write_text("{not json"),
        "RUN_NO_MODELS": lambda p: (p / "models.npz").unlink(),
    }.items():
        shutil.copytree(run, root / name)
        change(root / name)
    config = json.loads((run / "config.json").read_text())
    (root / "list.json").write_text("[1, 2]\n")
    (root / "latin1.json").write_bytes(json.dumps(config).encode().replace(b"digits", b"digit\xe9s"))
    (root / "groups_true.json").write_text(json.dumps({**config, "groups": True}))
    (root / "clients_text.json").write_text(json.dumps({**config, "clients": "four"}))
    (root / "unknown.json").write_text(json.dumps({**config, "colour": "red"}))
    (root / "nan.json").write_text(json.dumps({**config, "method": "sattler", "params": {"eps2": float("nan")}}))
    (root / "nb.ipynb").write_text(json.dumps(BATCH_NOTEBOOK))
    for name, body in {
        "abs_name": "name: /tmp/elsewhere\nruns: [{name: a, notebook: nb.ipynb}]\n",
        "dotdot_name": "name: ../escape\nruns: [{name: a, notebook: nb.ipynb}]\n",
        "timeout_text": "timeout: abc\nruns: [{name: a, notebook: nb.ipynb}]\n",
        "clients_text": "runs: [{name: a, notebook: nb.ipynb, parameters: {clients: four}}]\n",
        "undeclared": "runs: [{name: a, notebook: nb.ipynb, parameters: {rounds: 3}}]\n",
        "not_yaml": "runs: [{name: a\n",
    }.items():
        (root / f"{name}.yaml").write_text(body)
    return root


# (arguments, words the one-line error must contain, exit code); paths are relative to the workspace
CASES = [
    # cflkit run: names, numbers, ranges
    (["run", "--dataset", "digitz"], "unknown dataset 'digitz'; choose one of: digits", 2),
    (["run", "--method", "fedavgg"], "unknown method 'fedavgg'; choose one of: fedavg", 2),
    (["run", "--scenario", "rotaton"], "unknown scenario 'rotaton'; choose one of", 2),
    (["run", "--clients", "four"], "option 'clients' expects an integer, got 'four'", 2),
    (["run", "--clients", "0"], "clients must be >= 1, got 0", 2),
    (["run", "--groups", "true"], "option 'groups' expects an integer, got 'true'", 2),
    (["run", "--rounds", "-1"], "rounds must be >= 0, got -1", 2),
    (["run", "--rounds", "2.5"], "option 'rounds' expects an integer, got '2.5'", 2),
    (["run", "--seed", "-1"], "seed must be >= 0, got -1", 2),
    (["run", "--learning_rate", "0"], "learning_rate must be > 0, got 0.0", 2),
    (["run", "--learning_rate", "nan"], "learning_rate must be a finite number, got nan", 2),
    (["run", "--method", "sattler", "--set", "eps2=nan"], "parameter 'eps2' expects a finite number, got 'nan'", 2),
    (["run", "--method", "sattler", "--eps1", "inf"], "parameter 'eps1' expects a finite number, got 'inf'", 2),
    (["run", "--set", "alpha=-inf"], "alpha must be a finite number, got -inf", 2),
    (["run", "--set", "alpha=0"], "alpha must be > 0, got 0.0", 2),
    (["run", "--method", "fedprox", "--set", "mu=-0.1"], "parameter 'mu' must be >= 0.0, got -0.1", 2),
    (["run", "--set", "test_fraction=1.5"], "test_fraction must be in (0, 1), got 1.5", 2),
    (["run", "--set", "noise=NaN"], "noise must be a finite number, got nan", 2),
    (["run", "--method", "flhc", "--set", "distance_threshold=inf"],
     "parameter 'distance_threshold' expects a finite number or none, got 'inf'", 2),
    (["run", "--set", "quantity_exponent=0"], "quantity_exponent must be > 0, got 0.0", 2),
    (["run", "--set", "quantity_ratios=1,nan"], "quantity_ratios must be a finite number, got (1.0, nan)", 2),
    (["run", "--set", "quantity_ratios=1,-2"], "quantity_ratios must all be > 0, got [1.0, -2.0]", 2),
    (["run", "--set", "hidden=64,0"], "hidden layer sizes must be >= 1, got [64, 0]", 2),
    (["run", "--set", "batch_size=0"], "batch_size must be >= 1, got 0", 2),
    (["run", "--set", "local_epochs=0"], "local_epochs must be >= 1, got 0", 2),
    (["run", "--method", "flhc", "--set", "warmup_rounds=-2"], "parameter 'warmup_rounds' must be >= 0, got -2", 2),
    (["run", "--method", "ifca", "--restarts", "0"], "parameter 'restarts' must be >= 1, got 0", 2),
    (["run", "--method", "ifca", "--set", "clusters=-1"],
     "parameter 'clusters' must be an integer >= 1 or 'groups' (as many as the planted groups) or 'auto' (the "
     "method chooses), got -1", 2),
    (["run", "--method", "ifca", "--set", "eps2=0.8"],
     "method 'ifca' has no parameter 'eps2'; its parameters: clusters, restarts", 2),
    (["run", "--set", "restarts=5"], "method 'fedavg' has no parameter 'restarts'; it takes no parameters", 2),
    (["run", "--method", "pacfl", "--set", "representation=update"],
     "representation 'update' needs local training first", 2),
    (["run", "--set", "samples_per_client=-5"], "samples_per_client must be >= 0 (0: split the dataset), got -5", 2),
    (["run", "--set", "jit_compile=maybe"], "option 'jit_compile' expects true or false, got 'maybe'", 2),
    (["run", "--set", "colour=red"], "unknown option 'colour'; choose one of: dataset", 2),
    (["run", "--set", "groups"], "--set expects KEY=VALUE, got 'groups'", 2),
    (["run", "--clients", "4", "--set", "groups=20"], "groups must be between 1 and clients (4), got 20", 2),
    # client sampling and dropouts
    (["run", "--set", "participation=0"], "participation must be in (0, 1] (the share of clients sampled", 2),
    (["run", "--set", "participation=1.5"], "participation must be in (0, 1]", 2),
    (["run", "--set", "dropout=1"], "dropout must be in [0, 1) (the probability that an update is lost), got 1.0", 2),
    (["run", "--set", "dropout=-0.1"], "dropout must be in [0, 1)", 2),
    (["run", "--clients", "4", "--set", "min_participants=5"], "min_participants must be in 1..clients=4, got 5", 2),
    (["run", "--set", "min_participants=0"], "min_participants must be >= 1, got 0", 2),
    (["run", "--method", "centralized", "--set", "participation=0.5"],
     "method 'centralized' does not handle absent clients yet (participation=0.5, dropout=0); use participation=1",
     2),
    (["compare", "--methods", "fedavg,centralized", "--set", "dropout=0.2"],
     "method 'centralized' does not handle absent clients yet", 2),
    # models
    (["run", "--model", "resnet"], "unknown model 'resnet'; choose one of: logreg, mlp, cnn, or your own as "
     "'package.module:function'", 2),
    (["run", "--model", "no_such_package.models:net"], "model 'no_such_package.models:net': cannot import module "
     "'no_such_package.models'", 2),
    (["run", "--model", "json:no_such_function"], "module 'json' has no attribute 'no_such_function'", 2),
    (["run", "--model", "json:__name__"], "'__name__' is a str, not a function (input_shape, n_outputs) -> "
     "keras.Model", 2),
    # client optimizers
    (["run", "--set", "optimizer=adagrad"], "unknown optimizer 'adagrad'; choose one of: sgd, momentum, adam", 2),
    (["run", "--set", "optimizer=momentum", "--set", "momentum=1"], "momentum must be in [0, 1), got 1.0", 2),
    (["run", "--set", "optimizer=adam", "--set", "beta2=-0.1"], "beta2 must be in [0, 1), got -0.1", 2),
    (["run", "--set", "epsilon=0"], "epsilon must be > 0, got 0.0", 2),
    # clients never seen in training
    (["run", "--set", "holdout_clients=16"], "holdout_clients must be in 0..clients-1=15 (at least one client trains)",
     2),
    (["run", "--set", "holdout_clients=-1"], "holdout_clients must be >= 0, got -1", 2),
    (["run", "--method", "local", "--set", "holdout_clients=2"],
     "method 'local' has no rule for a client that never trained (holdout_clients=2); use holdout_clients=0", 2),
    (["run", "--scenario", "natural"], "scenario 'natural' needs a dataset with sites", 2),
    # late clients
    (["run", "--rounds", "5", "--set", "arrival_round=7"],
     "arrival_round must be in 0..rounds=5 (0: every client from the start), got 7", 2),
    (["run", "--set", "arrival_round=3", "--set", "arrival_fraction=0"], "arrival_fraction must be in (0, 1]", 2),
    (["run", "--clients", "1", "--groups", "1", "--scenario", "iid", "--set", "arrival_round=2"],
     "arrival_round=2 needs at least 2 training clients (one there from the start)", 2),
    (["run", "--method", "centralized", "--set", "arrival_round=3"],
     "method 'centralized' does not handle absent clients yet (participation=1, dropout=0, arrival_round=3); use "
     "participation=1 and dropout=0 and arrival_round=0", 2),
    # drift
    (["run", "--rounds", "5", "--set", "drift_round=6"], "drift_round must be in 0..rounds=5 (0: no drift), got 6", 2),
    (["run", "--set", "drift_round=-1"], "drift_round must be >= 0 (0: no drift), got -1", 2),
    (["run", "--set", "drift_round=3", "--set", "drift_fraction=0"], "drift_fraction must be in (0, 1]", 2),
    (["run", "--set", "drift_round=3", "--set", "drift_fraction=1.5"],
     "drift_fraction must be in (0, 1] (the share of clients that switch group), got 1.5", 2),
    (["run", "--scenario", "iid", "--set", "drift_round=3"],
     "drift switches clients to another group, but scenario 'iid' with groups=4 plants one group", 2),
    (["run", "--dataset", "air_quality", "--scenario", "natural", "--set", "drift_round=3"],
     "drift needs a planted scenario", 2),
    (["run", "--dataset", "breast_cancer", "--method", "pacfl", "--set", "subspace_dim=31"],
     "subspace_dim=31 exceeds what the data allow: 30 features", 2),
    # cflkit run: config files
    (["run", "--config", "missing.json"], "cannot read config file 'missing.json': No such file", 2),
    (["run", "--config", "list.json"], "config file 'list.json' holds a JSON list, not an object", 2),
    (["run", "--config", "latin1.json"], "config file 'latin1.json' is not UTF-8 text", 2),
    (["run", "--config", "RUN_CONFIG_BROKEN/config.json"], "is not valid JSON", 2),
    (["run", "--config", "groups_true.json"], "option 'groups' expects an integer, got True", 2),
    (["run", "--config", "clients_text.json"], "option 'clients' expects an integer, got 'four'", 2),
    (["run", "--config", "unknown.json"], "config file 'unknown.json': unknown option 'colour'", 2),
    (["run", "--config", "nan.json"], "parameter 'eps2' expects a finite number, got nan", 2),
    # cflkit run: where it writes
    (["run", *TINY, "--out", "notes.txt"], "--out 'notes.txt' is an existing file; cflkit never replaces a file", 2),
    (["run", *TINY, "--out", "thesis"], "--out 'thesis' is a directory that cflkit did not write", 2),
    (["run", *TINY, "--out", "REPORT"], "--out 'REPORT' is an explanation report (written by `cflkit explain`)", 2),
    (["run", *TINY, "--out", "RUN_WITH_REPORT"], "holds 1 entry that `cflkit run` did not write (explain/)", 2),
    (["run", *TINY, "--out", "RUN_WITH_REPORT/explain"], "is an explanation report", 2),
    (["run", *TINY, "--out", "link"], "--out 'link' is a symbolic link", 2),
    (["run", *TINY, "--out", "notes.txt/run"], "'notes.txt' is a file, not a directory", 2),
    # cflkit explain
    (["explain", "nowhere"], "'nowhere' is not a run directory: no such directory", 2),
    (["explain", "thesis"], "'thesis' is not a run directory: missing config.json", 2),
    (["explain", "RUN", "--out", "RUN"], "--out 'RUN' is a run directory (written by `cflkit run`), not an expl", 2),
    (["explain", "RUN", "--out", "notes.txt"], "--out 'notes.txt' is an existing file", 2),
    (["explain", "RUN", "--out", "thesis"], "--out 'thesis' is a directory that cflkit did not write", 2),
    (["explain", "RUN", "--probes", "-1"], "argument --probes: must be >= 0, got -1", 2),
    (["explain", "RUN", "--probes", "many"], "argument --probes: expects an integer >= 0, got 'many'", 2),
    (["explain", "RUN", "--seed", "-1"], "argument --seed: must be >= 0, got -1", 2),
    (["explain", "RUN_TRUNCATED"], "models file 'RUN_TRUNCATED/models.npz' cannot be read: truncated", 2),
    (["explain", "RUN_CONFIG_LIST"], "config file 'RUN_CONFIG_LIST/config.json' holds a JSON list", 2),
    (["explain", "RUN_CONFIG_UTF8"], "config file 'RUN_CONFIG_UTF8/config.json' is not UTF-8 text", 2),
    (["explain", "RUN_CONFIG_BROKEN"], "config file 'RUN_CONFIG_BROKEN/config.json' is not valid JSON", 2),
    (["explain", "RUN_CONFIG_BOOL"], "config file 'RUN_CONFIG_BOOL/config.json': option 'groups' expects an", 2),
    (["explain", "RUN_SUMMARY_BROKEN"], "run summary 'RUN_SUMMARY_BROKEN/summary.json' is not valid JSON", 2),
    (["explain", "RUN_NO_MODELS"], "has no models.npz", 2),
    # cflkit compare
    (["compare", "--methods", "fedavgg"], "unknown method 'fedavgg'", 2),
    (["compare", "--methods", ""], "--methods gives no values for 'method'", 2),
    (["compare", "--methods", "fedavg", "--workers", "0"], "argument --workers: must be >= 1, got 0", 2),
    (["compare", "--methods", "fedavg", "--workers", "two"], "argument --workers: expects an integer >= 1", 2),
    (["compare", "--methods", "fedavg", "--grid", "colour=red,blue"],
     "unknown config field or method parameter 'colour' in --grid", 2),
    (["compare", "--methods", "fedavg,oracle", "--grid", "restarts=1,5"],
     "no method of the grid (fedavg, oracle) takes parameter 'restarts'; it is a parameter of: ifca", 2),
    (["compare", "--methods", "fedavg", "--grid", "rounds=a,b"], "option 'rounds' expects an integer, got 'a'", 2),
    (["compare", "--methods", "fedavg", "--seeds", "0,-1"], "seed must be >= 0, got -1", 2),
    (["compare", "--methods", "fedavg", "--scenarios", "rotaton"], "unknown scenario 'rotaton'", 2),
    (["compare", "--methods", "fedavg,sattler", "--set", "eps2=inf"],
     "parameter 'eps2' expects a finite number, got 'inf'", 2),
    (["compare", "--methods", "fedavg", "--out", "notes.txt"], "--out 'notes.txt' is an existing file", 2),
    (["compare", "--methods", "fedavg", "--out", "analysis"],
     "--out 'analysis' already holds 'results.csv', which `cflkit compare` did not write", 2),
    (["compare", "--methods", "fedavg", "--out", "RUN"], "--out 'RUN' is a run directory", 2),
    # cflkit demo
    (["demo", "--rounds", "-1"], "argument --rounds: must be >= 0, got -1", 2),
    (["demo", "--seed", "-1"], "argument --seed: must be >= 0, got -1", 2),
    (["demo", "--scenario", "rotaton"], "unknown scenario 'rotaton'", 2),
    (["demo", "--out", "notes.txt"], "--out 'notes.txt' is an existing file", 2),
    (["demo", "--out", "analysis"], "--out 'analysis' already holds 'comparison.txt', which `cflkit demo`", 2),
    (["demo", "--out", "RUN"], "--out 'RUN' is a run directory", 2),
    # cflkit batch
    (["batch", "missing.yaml"], "cannot read experiment file 'missing.yaml'", 2),
    (["batch", "not_yaml.yaml"], "not_yaml.yaml is not valid YAML", 2),
    (["batch", "abs_name.yaml"], "'/tmp/elsewhere'", 2),
    (["batch", "dotdot_name.yaml"], "'../escape'", 2),
    (["batch", "timeout_text.yaml"], "timeout", 2),
    (["batch", "clients_text.yaml"], "runs[0].parameters.clients", 2),
    (["batch", "undeclared.yaml"], "rounds", 2),
    (["batch", "undeclared.yaml", "--workers", "0"], "workers", 2),
    # cflkit flower (before any process starts)
    (["flower", "demo", "--rounds", "0"], "argument --rounds: must be >= 1, got 0", 2),
    (["flower", "demo", "--round_timeout", "nan"], "argument --round_timeout: must be a finite number", 2),
    (["flower", "demo", "--methods", "fedavgg"], "unknown method 'fedavgg'", 2),
    (["flower", "demo", "--out", "notes.txt"], "--out 'notes.txt' is an existing file", 2),
    (["flower", "demo", "--out", "RUN"], "--out 'RUN' is a run directory", 2),
    (["flower", "app", "analysis"], "analysis", 2),
    # anything else
    (["frobnicate"], "invalid choice: 'frobnicate'", 2),
    (["data", "fetch", "nosuch"], "nosuch", 2),
]


def _tree(root):
    """Every path under ``root``, with size and modification time for files: what a case may
    not change (a directory's own time changes with the probe that checks it is writable)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("args, words, code", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_clean_line_and_changes_nothing(args, words, code, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("CFLKIT_CACHE_DIR", str(workspace / "cache"))
    monkeypatch.setenv("CFLKIT_NO_DOWNLOAD", "1")
    before = _tree(workspace)
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.startswith("cflkit: error: ") and err.count("\n") == 1, err
    assert words in err, err
    assert "Traceback" not in err
    assert _tree(workspace) == before, "a refused command changed what is on disk"


def test_bad_input_is_refused_before_tensorflow_is_imported(workspace):
    """'Before any heavy work': the checks need neither TensorFlow nor training."""
    cases = [args for args, _, _ in CASES if args[0] in ("run", "explain", "compare", "demo")]
    script = textwrap.dedent(f"""
        import sys
        from cflkit.cli import main
        codes = [main(a) for a in {cases!r}]
        print(codes, 'tensorflow' in sys.modules)
    """)
    env = {**os.environ, "CFLKIT_NO_DOWNLOAD": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=workspace, capture_output=True, text=True, env=env,
                          timeout=600)
    codes, imported = done.stdout.rsplit(" ", 1)
    assert set(json.loads(codes)) == {2} and imported.strip() == "False", done.stdout + done.stderr[-2000:]
