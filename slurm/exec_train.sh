#!/bin/bash
# The common tail of the batch scripts. `exec` all the way down to the supervisor (jobs/supervise/),
# which *is* then the batch shell: it receives SLURM's B:USR2 warning and forwards it (and TERM) to the
# trainer at once, and requeues the job when the trainer dies abnormally after making progress (the OOM
# killer's SIGKILL, a segfault, a CUDA error), up to --max-crash-retries times.
# A job of several tasks (sbatch -n N, --ntasks-per-node N) runs one supervisor and trainer per task under
# srun: the trainers form one DDP process group (jobs/distributed/); the job's --signal must then go to
# the tasks (USR2@N, without B:), and task 0's supervisor decides about crash requeues.
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$PWD}"
# The run id is stable across requeues: it comes from the job id (kept by `scontrol requeue`) unless given.
run_id=${RUN_ID:-${SLURM_JOB_NAME:-train}-${SLURM_JOB_ID:?not inside a SLURM job; use scripts/train.py}}
data=(--data-dir "${DATA_DIR:-data/cifar-10-batches-py}")
for arg in "$@"; do
  case "$arg" in --synthetic*|--data-dir*) data=() ;; esac  # the caller chose the data
done
python=${PYTHON:-python3}
launcher=()
if [ "${SLURM_NTASKS:-1}" -gt 1 ]; then
  launcher=(srun --kill-on-bad-exit=0)
fi
exec "${launcher[@]}" "$python" -m jobs.supervise -- "$python" scripts/train.py "${data[@]}" --run-id "$run_id" \
  --resume-if-exists "$@"
