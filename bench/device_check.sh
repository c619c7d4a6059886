#!/usr/bin/env bash
# The round-time bench on whatever GPU TensorFlow sees, as is, on a GPU machine:
#   bash bench/device_check.sh            # writes bench/device_check.jsonl (one JSON object per size)
# Sizes 10 / 200 / 1000 / 10000 clients of the 64-64-10 MLP, each in its own process (so that
# peak memory is per size), with XLA and the client optimizers; the per-client compiled loop
# on its first 50 clients. Exits 3 with a message when TensorFlow sees no GPU
# (DEVICE_CHECK_ALLOW_CPU=1 runs it on the CPU anyway; SIZES="10 200" and OUT=DIR change the sizes and where it writes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
if ! gpus=$("$PY" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null); then
  echo "device_check: TensorFlow does not import with $PY; run 'make venv' first (or set PYTHON=...)" >&2
  exit 2
fi
if [ "$gpus" = 0 ] && [ -z "${DEVICE_CHECK_ALLOW_CPU:-}" ]; then
  echo "device_check: TensorFlow sees no GPU here (tf.config.list_physical_devices('GPU') is empty), so there is" \
       "nothing to bench; run it on a machine with a GPU and a CUDA build of TensorFlow" \
       "(pip install 'tensorflow[and-cuda]'). The CPU bench: python bench/round_time.py --help" >&2
  exit 3
fi
out=${OUT:-bench}/device_check.jsonl
: > "$out.tmp"
for n in ${SIZES:-10 200 1000 10000}; do
  "$PY" bench/round_time.py --clients "$n" --jit --optimizers --skip-fit --max-loop-clients 50 --repeats 5 \
    --ref-repeats 3 --json | "$PY" -c "import json, sys; print(json.dumps(json.load(sys.stdin)))" >> "$out.tmp"
done
mv "$out.tmp" "$out"
"$PY" - "$out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'clients':>8} {'s/round':>9} {'XLA':>9} {'adam/sgd':>9} {'vs loop':>8} {'peak GPU MiB':>12}  {rows[0].get('gpu_name', '')}")
for r in rows:
    print(f"{r['clients']:>8} {r['seconds_per_round']:>9.4f} {r['xla_seconds_per_round']:>9.4f} {r['adam_vs_sgd']:>9.2f} "
          f"{r.get('speedup_vs_reference_loop', float('nan')):>8.1f} {r.get('gpu_peak_memory_bytes', 0) / 2**20:>12.0f}")
PY
