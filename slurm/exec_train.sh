#!/bin/bash
# The common tail of the batch scripts. `exec` all the way down: the trainer *is* the batch shell,
# so it receives SLURM's B:USR2 warning itself (a shell in between would hold it until its child exits).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$PWD}"
# The run id is stable across requeues: it comes from the job id (kept by `scontrol requeue`) unless given.
run_id=${RUN_ID:-${SLURM_JOB_NAME:-train}-${SLURM_JOB_ID:?not inside a SLURM job; use scripts/train.py}}
data=(--data-dir "${DATA_DIR:-data/cifar-10-batches-py}")
for arg in "$@"; do
  case "$arg" in --synthetic*|--data-dir*) data=() ;; esac  # the caller chose the data
done
exec "${PYTHON:-python3}" scripts/train.py "${data[@]}" --run-id "$run_id" --resume-if-exists "$@"
