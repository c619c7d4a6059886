"""What a command may write, replace or delete (``cflkit.core.outputs``): nothing a user owns is
ever destroyed; places that cannot be written are refused before any work; a full device
is one line and leaves nothing half-written; a killed writer's leftovers are cleaned up;
a killed ``compare`` leaves no worker behind."""
import errno
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from cflkit import Config
from cflkit.cli import main
from cflkit.core import experiment
from cflkit.core.outputs import MANIFEST, OutputError, check_output, read_manifest, write_manifest
from cflkit.core.results import load_run

TINY = ["--dataset", "digits", "--clients", "4", "--groups", "2", "--rounds", "1", "--local_epochs", "1",
        "--no-progress"]
STRICT = os.environ.get("CFLKIT_STRICT") == "1"  # set by .ci/run: what needs root fails there instead of skipping


def _skip(reason):
    if STRICT:
        pytest.fail(f"{reason} (CFLKIT_STRICT=1: this check must run here)")
    pytest.skip(reason)


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A real small (or read-only) file system at ``path``: needs root and mount rights."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        _skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    return not (cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files) and \
        all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "RUN"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def fresh_run(run_dir, tmp_path):
    out = tmp_path / "RUN"
    shutil.copytree(run_dir, out)
    return out


# -- the ownership rule ------------------------------------------------------------------------
def test_a_run_is_written_with_a_manifest_of_its_files(fresh_run):
    manifest = json.loads((fresh_run / MANIFEST).read_text())
    assert manifest["kind"] == "run" and manifest["written_by"] == "cflkit run"
    assert set(manifest["files"]) == {"config.json", "history.csv", "summary.json", "models.npz"}
    assert read_manifest(fresh_run).files == set(manifest["files"])


def test_rerunning_into_the_same_run_replaces_it_whole(fresh_run, capsys):
    assert main(["run", "--config", str(fresh_run / "config.json"), "--seed", "1", "--out", str(fresh_run),
                 "--no-progress"]) == 0
    assert load_run(fresh_run).config.seed == 1
    assert sorted(p.name for p in fresh_run.parent.iterdir()) == ["RUN"], "no temporary sibling left"
    assert "wrote" in capsys.readouterr().out


def test_the_issue_case_run_into_a_run_with_a_report_is_refused_before_training(fresh_run, monkeypatch, capsys):
    """`cflkit run --config RUN/config.json --out RUN` used to delete RUN/explain/."""
    (fresh_run / "explain").mkdir()
    (fresh_run / "explain" / "report.md").write_text("# my report")
    (fresh_run / "notes.txt").write_text("my notes")
    before = fresh_run.parent / "before"
    shutil.copytree(fresh_run, before)
    monkeypatch.setattr(experiment, "build_context", lambda *a: pytest.fail("trained before refusing"))
    assert main(["run", "--config", str(fresh_run / "config.json"), "--out", str(fresh_run)]) == 2
    err = capsys.readouterr().err
    assert "holds 2 entries that `cflkit run` did not write (explain/, notes.txt)" in err and "--force" in err
    assert _same_tree(fresh_run, before)


def test_force_replaces_the_runs_own_files_and_keeps_the_others(fresh_run):
    (fresh_run / "explain").mkdir()
    (fresh_run / "explain" / "report.md").write_text("# my report")
    (fresh_run / "notes.txt").write_text("my notes")
    assert main(["run", "--config", str(fresh_run / "config.json"), "--seed", "3", "--out", str(fresh_run),
                 "--force", "--no-progress"]) == 0
    assert load_run(fresh_run).config.seed == 3
    assert (fresh_run / "explain" / "report.md").read_text() == "# my report"
    assert (fresh_run / "notes.txt").read_text() == "my notes"
    assert "notes.txt" not in read_manifest(fresh_run).files  # still not the run's own
    assert sorted(p.name for p in fresh_run.parent.iterdir()) == ["RUN"]


def test_force_never_replaces_what_cflkit_did_not_write(tmp_path, capsys):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter.tex").write_text("precious")
    (tmp_path / "file").write_text("precious")
    for target in ("thesis", "file"):
        assert main(["run", *TINY, "--out", str(tmp_path / target), "--force"]) == 2
        assert "cflkit never replaces" in capsys.readouterr().err
    assert (tmp_path / "thesis" / "chapter.tex").read_text() == "precious"
    assert (tmp_path / "file").read_text() == "precious"


def test_explain_into_the_run_itself_or_a_users_folder_is_refused(fresh_run, tmp_path, capsys):
    before = tmp_path / "before"
    shutil.copytree(fresh_run, before)
    for out in (fresh_run, tmp_path / "mine"):
        if out.name == "mine":
            out.mkdir()
            (out / "data.csv").write_text("1,2")
        assert main(["explain", str(fresh_run), "--out", str(out), "--probes", "0"]) == 2
        assert "choose another path" in capsys.readouterr().err
    assert _same_tree(fresh_run, before) and (tmp_path / "mine" / "data.csv").read_text() == "1,2"


def test_an_earlier_report_is_replaced_and_a_users_file_in_it_kept_only_with_force(fresh_run, capsys):
    report = fresh_run / "explain"
    assert main(["explain", str(fresh_run), "--probes", "0", "--no-progress"]) == 0
    assert read_manifest(report).kind == "explain"
    assert main(["explain", str(fresh_run), "--probes", "0", "--no-progress"]) == 0  # its own: replaced
    (report / "figures" / "my_sketch.png").write_bytes(b"mine")
    assert main(["explain", str(fresh_run), "--probes", "0"]) == 2
    assert "figures/my_sketch.png" in capsys.readouterr().err
    assert main(["explain", str(fresh_run), "--probes", "0", "--force", "--no-progress"]) == 0
    assert (report / "figures" / "my_sketch.png").read_bytes() == b"mine"


def test_a_run_written_before_manifests_is_recognised_by_its_files(fresh_run, capsys):
    (fresh_run / MANIFEST).unlink()
    legacy = read_manifest(fresh_run)
    assert legacy.legacy and legacy.kind == "run" and "models.npz" in legacy.files
    assert main(["run", "--config", str(fresh_run / "config.json"), "--out", str(fresh_run), "--no-progress"]) == 0
    assert not read_manifest(fresh_run).legacy
    (fresh_run / "mine.txt").write_text("x")
    (fresh_run / MANIFEST).unlink()
    assert main(["run", "--config", str(fresh_run / "config.json"), "--out", str(fresh_run)]) == 2
    assert "mine.txt" in capsys.readouterr().err


def test_the_python_api_refuses_before_training(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    monkeypatch.setattr(experiment, "build_context", lambda *a: pytest.fail("trained before refusing"))
    with pytest.raises(OutputError, match="a directory that cflkit did not write"):
        experiment.run(Config(clients=4, groups=2, rounds=1), out=tmp_path / "mine")


def test_a_grid_adds_its_own_entries_to_a_folder_and_never_touches_the_others(tmp_path):
    """A notebook's out_dir holds its figures, then a grid: both live side by side."""
    from cflkit.study.compare import compare

    out = tmp_path / "grid"
    out.mkdir()
    (out / "figure.pdf").write_bytes(b"a figure")
    base = Config(clients=4, groups=2, rounds=1, local_epochs=1)
    compare({"method": ["fedavg"]}, out, workers=1, progress=False, base=base)
    manifest = read_manifest(out)
    assert manifest.kind == "compare" and {"cells", "results.csv"} <= manifest.files
    assert "figure.pdf" not in manifest.files
    (out / "my_notes.md").write_text("notes")
    compare({"method": ["fedavg", "local"]}, out, workers=1, progress=False, base=base)
    assert (out / "my_notes.md").read_text() == "notes" and (out / "figure.pdf").read_bytes() == b"a figure"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "table.md").write_text("my table")
    with pytest.raises(OutputError, match="already holds 'table.md'"):
        compare({"method": ["fedavg"]}, mine, workers=1, progress=False, base=base)
    assert sorted(p.name for p in mine.iterdir()) == ["table.md"]


# -- places that cannot be written, checked before the work -----------------------------------
def test_an_unwritable_place_is_refused_with_one_line_before_training(tmp_path):
    """A directory without write permission (mode 0555). Root ignores permissions, so as
    root (CI) the command runs without the capability that lets it (setpriv)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    prefix = []
    if os.getuid() == 0:
        if shutil.which("setpriv") is None:
            _skip("root ignores permissions and setpriv (util-linux) is missing")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    code = ("import sys; from cflkit.cli import main; c = main(sys.argv[1:]); "
            "print(c, 'tensorflow' in sys.modules)")
    try:
        for args in (["run", *TINY, "--out", str(locked / "x")],
                     ["compare", "--methods", "fedavg", "--set", "rounds=1", "--out", str(locked / "grid")],
                     ["demo", "--rounds", "1", "--out", str(locked / "demo")],
                     ["explain", str(tmp_path), "--out", str(locked / "report")]):
            done = subprocess.run([*prefix, sys.executable, "-c", code, *args], capture_output=True, text=True,
                                  timeout=300)
            assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr[-1500:]
            err = done.stderr.strip()
            expected = "is not a run directory" if args[0] == "explain" else "is not writable (Permission denied)"
            assert err.count("\n") == 0 and expected in err, err
        assert list(locked.iterdir()) == []
    finally:
        os.chmod(locked, 0o755)


def test_a_read_only_file_system_is_refused_before_training(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        for args in (["run", *TINY, "--out", str(ro / "x")],
                     ["compare", "--methods", "fedavg", "--out", str(ro / "grid")],
                     ["explain", str(tmp_path), "--out", str(ro / "report")]):
            code = main(args)
            err = capsys.readouterr().err
            if args[0] == "explain":  # tmp_path is not a run: named first
                assert code == 2 and "is not a run directory" in err
                continue
            assert code == 2 and "is not writable (Read-only file system)" in err and err.count("\n") == 1, err


def test_a_full_device_is_one_line_exit_1_and_leaves_nothing(tmp_path, run_dir, capsys):
    with tmpfs(tmp_path / "full", "48k") as full:
        assert main(["run", *TINY, "--out", str(full / "x")]) == 1
        err = capsys.readouterr().err
        assert "no space left on the device to write" in err and "it needs" in err and " free" in err, err
        assert err.count("\n") == 1 and list(full.iterdir()) == []
        (full / "filler").write_bytes(b"\0" * 48 * 1024)  # no space at all
        assert main(["compare", "--methods", "fedavg", "--set", "rounds=1", "--set", "clients=4",
                     "--set", "groups=2", "--set", "local_epochs=1", "--workers", "1", "--out", str(full / "grid"),
                     "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert "no space left on the device" in err and "Traceback" not in err, err
        assert sorted(p.name for p in full.iterdir()) == ["filler"], "no empty cells/ or partial grid"
        (full / "filler").write_bytes(b"\0" * 40 * 1024)  # room for part of a report
        assert main(["explain", str(run_dir), "--out", str(full / "report"), "--probes", "0",
                     "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert "no space left on the device to write" in err and "needs more than" in err, err
        assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_running_out_of_space_while_writing_is_reported_the_same_way(tmp_path, monkeypatch, capsys):
    """The same failure without a small device: the writes themselves fail with ENOSPC."""
    real = Path.write_bytes

    def full(self, data):
        if ".tmp-" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["run", *TINY, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device to write" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_check_output_probes_the_nearest_existing_folder(tmp_path):
    check_output(tmp_path / "a" / "b" / "c", "run")  # missing parents are fine: they would be made
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output(tmp_path / "f" / "run", "run")


# -- what a killed writer leaves behind ----------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_next_write_removes_what_a_killed_writer_left(fresh_run, tmp_path):
    pid = _dead_pid()
    stale_tmp = tmp_path / f".RUN.tmp-{pid}-abc123"
    stale_tmp.mkdir()
    (stale_tmp / "history.csv").write_text("half")
    stale_old = tmp_path / f".RUN.old-{pid}-def456"
    shutil.copytree(fresh_run, stale_old / "RUN")  # the old copy of a swap, killed before it was removed
    (stale_old / "RUN" / "notes.txt").write_text("a user's file that was in the old run")
    stale_file = tmp_path / f".other.csv.file-{pid}-xyz.tmp"
    stale_file.write_text("half")
    live = tmp_path / f".RUN.tmp-{os.getpid()}-live"  # a writer that is still running: left alone
    live.mkdir()
    # the user's file is put back where it was, so the run now holds a file it did not write
    assert main(["run", "--config", str(fresh_run / "config.json"), "--out", str(fresh_run)]) == 2
    assert not stale_tmp.exists() and not stale_old.exists() and live.exists()
    assert (fresh_run / "notes.txt").read_text() == "a user's file that was in the old run"
    assert main(["run", "--config", str(fresh_run / "config.json"), "--out", str(fresh_run), "--force",
                 "--no-progress"]) == 0
    assert (fresh_run / "notes.txt").read_text() == "a user's file that was in the old run"
    assert stale_file.exists()  # another file's leftovers: removed by the next write of that file
    from cflkit.core.results import write_text_atomic

    write_text_atomic(tmp_path / "other.csv", "a,b\n")
    assert not stale_file.exists()
    live.rmdir()


def test_manifest_lists_only_the_files_of_the_directory(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x.csv").write_text("1")
    write_manifest(tmp_path / "d", "explain")
    assert read_manifest(tmp_path / "d").files == {"sub/x.csv"}


# -- a killed compare leaves no worker behind -------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(p.name))
    return out


@pytest.mark.slow
def test_kill_9_of_compare_takes_its_workers_with_it(tmp_path):
    cmd = [sys.executable, "-m", "cflkit.cli", "compare", "--methods", "fedavg,local,oracle", "--seeds", "0,1,2,3",
           "--set", "rounds=30", "--set", "clients=8", "--workers", "2", "--out", str(tmp_path / "grid"),
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [c for c in _children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
    assert len(workers) == 2, "compare did not start its two workers"
    time.sleep(3)  # the workers are busy with cells
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [w for w in alive if Path(f"/proc/{w}").exists()
                 and (Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]
    assert not alive, f"workers {alive} outlived the killed compare"
