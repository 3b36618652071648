#!/usr/bin/env bash
# The NMS extension on a GPU machine, in one command: build for the visible GPU, run the NMS tests (CUDA kernels
# against the pure-torch reference, hand-worked cases and ActionFormer's nms_cpu.cpp), then the speed benchmark.
#
#   bash benchmarks/gpu_check.sh            # logs and JSON in $OUT (device tool) or runs/gpu_check
#
# Needs python3 with torch (CUDA build), pytest, nvcc; the oracle sdist unpacked in .cache/oracle for the parity
# tests and the ActionFormer baseline (they skip without it). About 5 minutes on one H200 with 16 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
LOGS=${OUT:-runs/gpu_check}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 TAL_KIT_EXT_DIR=${TAL_KIT_EXT_DIR:-$PWD/.cache/ext}
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$LOGS/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())"

echo "== cold build (CUDA + C++) =="
rm -rf "$TAL_KIT_EXT_DIR"
{ time "$PY" -m tal_kit build-ext; } 2>&1 | tee "$LOGS/build.log" || status=1
echo "== cached load =="
{ time "$PY" -m tal_kit build-ext; } 2>&1 | tee -a "$LOGS/build.log"
"$PY" -c "from tal_kit.ops import cli_info_lines; print('\n'.join(cli_info_lines()))" | tee -a "$LOGS/build.log"

echo "== NMS tests =="
"$PY" -m pytest -q -p no:cacheprovider -rs --durations=10 tests/test_nms_reference.py tests/test_nms_backends.py \
    tests/test_nms_oracle.py tests/test_nms_build.py 2>&1 | tee "$LOGS/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== benchmark =="
"$PY" benchmarks/nms_speed.py --baseline-videos 400 --json "$LOGS/nms_speed.json" 2>&1 | tee "$LOGS/benchmark.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "gpu_check exit status: $status"
exit $status
