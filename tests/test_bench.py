"""bench/device_check.sh: the GPU bench refuses plainly without a GPU, and runs end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "device_check.sh"


def _tf_sees_a_gpu() -> bool:
    probe = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() not in ("", "0")


def test_device_check_without_a_gpu_exits_3_naming_what_is_missing(tmp_path):
    if _tf_sees_a_gpu():
        pytest.skip("this machine has a GPU: the refusal cannot happen here")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    env.pop("DEVICE_CHECK_ALLOW_CPU", None)
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    assert done.returncode == 3, done.stderr
    assert "TensorFlow sees no GPU" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "device_check.jsonl").exists()


def test_device_check_runs_the_round_bench_and_writes_one_line_per_size(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "DEVICE_CHECK_ALLOW_CPU": "1", "SIZES": "4 8"}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "device_check.jsonl").read_text().splitlines()]
    assert [r["clients"] for r in rows] == [4, 8]
    for r in rows:
        assert r["seconds_per_round"] > 0 and r["xla_seconds_per_round"] > 0 and r["adam_vs_sgd"] > 0
        assert r["peak_rss_bytes"] > 0 and r["check_max_abs_diff_vs_reference_loop"] < 1e-5
    assert "clients" in done.stdout.splitlines()[0]
