#!/usr/bin/env bash
# Every GPU check the project owes, in one command and about 5 minutes on one GPU, ending with one summary table:
#
#   nms_build      cold build of the C++/CUDA NMS extension for the visible GPU, then the cached load
#   nms_tests      the NMS tests on the GPU: CUDA kernels vs the pure-torch reference, hand-worked cases,
#                  ActionFormer's nms_cpu.cpp, the build cache, the CUDA self-check with the real kernels
#   nms_speed      NMS speed (CUDA vs C++ vs torch) and "CUDA vs C++: identical"
#   model_parity   ActionFormer on CUDA vs the reference implementation (losses and gradients)
#   train_speed    training step on CUDA vs the reference implementation, measured in the same run
#   bf16_step      training with bf16 autocast on the GPU (a short demo run)
#   nccl_1proc     a 1-process torchrun run (NCCL process group) of the demo
#   extract_speed  ViT-g/14 bf16 feature extraction vs its compute bound, and the whole extraction pipeline
#
#   bash benchmarks/gpu_check.sh            # logs in $OUT (device tool) or runs/gpu_check
#   bash benchmarks/gpu_check.sh --dry-run  # print the plan and the table without running anything (any machine)
#
# Needs python3 with torch (CUDA build), pytest and nvcc; the oracle sdist unpacked in .cache/oracle for the
# parity tests and the reference timings (those report "skip" without it). Exit status: 0 when every check passed
# or skipped, 1 when one failed, 2 when there is no GPU to check.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
LOGS=${OUT:-runs/gpu_check}
WORK=$LOGS/work
mkdir -p "$LOGS" "$WORK"
# a fresh build folder: the first build is a cold one, and no shared build cache is touched
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TAL_KIT_EXT_DIR=${TAL_KIT_EXT_DIR:-$(mktemp -d)/ext}

if [ "$DRY_RUN" = 0 ]; then
  if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "error: no GPU visible to torch ($("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA build:", torch.version.cuda)' 2>&1 | tail -1));"
    echo "       this script checks the GPU code paths and has nothing to check here (--dry-run prints its plan)"
    exit 2
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$LOGS/gpu.txt"
fi

NAMES=() STATUS=() SECONDS_TAKEN=() DETAILS=()
# check NAME TIMEOUT_S DETAIL_REGEX -- COMMAND...: run COMMAND (log: $LOGS/NAME.log) and record a table row; the
# detail is the last log line matching DETAIL_REGEX.
check() {
  local name=$1 limit=$2 pattern=$3
  shift 4
  NAMES+=("$name")
  if [ "$DRY_RUN" = 1 ]; then
    echo "[plan] $name (timeout ${limit}s): $*"
    STATUS+=("planned") SECONDS_TAKEN+=("-") DETAILS+=("(dry run)")
    return
  fi
  echo "== $name =="
  local start=$SECONDS rc
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  tail -n 5 "$LOGS/$name.log"
  local detail
  detail=$(grep -E "$pattern" "$LOGS/$name.log" | tail -n 1 | cut -c1-90)
  if [ $rc -eq 0 ] && grep -qE "(^| )[0-9]+ skipped|: skip$|unavailable" "$LOGS/$name.log" \
      && ! grep -qE "[0-9]+ passed" "$LOGS/$name.log"; then
    STATUS+=("skip")
  elif [ $rc -eq 0 ]; then
    STATUS+=("pass")
  elif [ $rc -eq 124 ]; then
    STATUS+=("FAIL (timeout)")
  else
    STATUS+=("FAIL (exit $rc)")
  fi
  SECONDS_TAKEN+=("$((SECONDS - start))") DETAILS+=("$detail")
}

DEMO_SET=(--set opt.epochs=1 --set opt.warmup_epochs=1 --set trainer.eval_start_epoch=1 --set loader.num_workers=2)

check nms_build 300 "compiled|cached build" -- \
  bash -c "'$PY' -m tal_kit build-ext && '$PY' -m tal_kit build-ext && '$PY' -m tal_kit info"
check nms_tests 240 "passed|failed" -- \
  "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_nms_reference.py tests/test_nms_backends.py \
  tests/test_nms_oracle.py tests/test_nms_build.py tests/test_nms_selfcheck.py
check nms_speed 180 "CUDA vs C\+\+" -- \
  "$PY" benchmarks/nms_speed.py --baseline-videos 100 --json "$LOGS/nms_speed.json"
check model_parity 180 "passed|failed" -- \
  "$PY" -m pytest -q -p no:cacheprovider -rs "tests/test_model_parity.py::test_model_matches_reference_on_cuda"
check train_speed 240 "^train step" -- \
  "$PY" benchmarks/model_speed.py --preset thumos14 --device cuda --repeats 10 --skip-memory
check bf16_step 180 "average mAP|epochs" -- \
  bash -c "'$PY' -m tal_kit demo-data --out '$WORK/demo' >/dev/null && '$PY' -m tal_kit train --config demo \
--data-root '$WORK/demo' --run-dir '$WORK/bf16' --device cuda --no-progress --set trainer.amp=bf16 ${DEMO_SET[*]}"
check nccl_1proc 180 "average mAP|epochs" -- \
  bash -c "'$PY' -m tal_kit demo-data --out '$WORK/demo' >/dev/null && '$PY' -m torch.distributed.run --standalone \
--nproc_per_node=1 -m tal_kit train --config demo --data-root '$WORK/demo' --run-dir '$WORK/nccl' --device cuda \
--no-progress ${DEMO_SET[*]}"
# ViT-g/14 bf16 feature extraction: model-only clips/s as a share of the compute bound (issue 11: >= 50%), then the
# whole pipeline (decode + recipe + model) on a generated video
check extract_speed 240 "of the bound|pipeline" -- \
  "$PY" benchmarks/extract_speed.py --device cuda --seconds 60

echo
echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ); logs in $LOGS)"
printf "| %-13s | %-15s | %6s | %s |\n" check status "s" detail
printf "|%s|%s|%s|%s|\n" "---------------" "-----------------" "--------" "---"
failed=0
for i in "${!NAMES[@]}"; do
  printf "| %-13s | %-15s | %6s | %s |\n" "${NAMES[$i]}" "${STATUS[$i]}" "${SECONDS_TAKEN[$i]}" "${DETAILS[$i]}"
  case "${STATUS[$i]}" in FAIL*) failed=1 ;; esac
done
exit $failed
