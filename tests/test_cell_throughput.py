"""bench/cell_throughput.py: its profile buckets count time entered from outside, and it runs
end to end on a tiny grid (the speed itself is measured by the bench, never asserted here)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from cell_throughput import entered_from_outside  # noqa: E402


def test_time_is_counted_where_the_region_is_entered_not_again_inside():
    # pstats: func -> (cc, nc, tt, ct, {caller: (cc, nc, tt, ct)}); a -> b -> b (recursion), main -> b
    a, b, main = ("x.py", 1, "a"), ("x.py", 2, "b"), ("x.py", 3, "main")
    stats = {main: (1, 1, 0.1, 10.0, {}),
             a: (1, 1, 0.5, 4.0, {main: (1, 1, 0.5, 4.0)}),
             b: (3, 3, 2.0, 5.0, {a: (1, 1, 1.0, 3.0), b: (1, 1, 0.5, 1.5), main: (1, 1, 0.5, 2.0)})}
    assert entered_from_outside(stats, lambda f: f[2] == "b") == 5.0  # from a 3.0 + from main 2.0
    assert entered_from_outside(stats, lambda f: f[2] in ("a", "b")) == 6.0  # a 4.0 + b from main 2.0


def test_the_bench_runs_a_tiny_grid_and_reports_cells_per_minute(tmp_path):
    out = tmp_path / "cells.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cell_throughput.py"), "--methods", "fedavg,ifca",
                           "--scenarios", "label_swap", "--rounds", "2", "--clients", "4", "--samples", "20",
                           "--parallel", "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == ["threads", "threads+evaluate-2"]
    for r in rows:
        assert r["cells"] == 3 and r["failed"] == 0 and r["cells_per_minute"] > 0
        assert r["package"].startswith(str(ROOT / "cflkit"))
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "cell_throughput.py"), "--json", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr, "an earlier result is never overwritten"
