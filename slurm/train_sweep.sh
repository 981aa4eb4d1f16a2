#!/bin/bash
# One task of a sweep: `scripts/submit.py --sweep KEY=V1,V2,... --sweep-name NAME` submits this script as a
# job array (sbatch --array=0-N-1, with the sweep's time, CPUs, GPUs, --signal) and passes the sweep file
# (<runs-dir>/sweeps/NAME.json) as its argument. Task i trains the run of point i of the grid under the run
# id the sweep file gives it (stable across requeues), through slurm/exec_train.sh like the other batch
# scripts: its supervisor forwards the time-limit warning, the trainer saves and requeues this task alone
# (`scontrol requeue <array>_<i>`), and a crashed trainer is retried by a requeue of this task.
#SBATCH --open-mode=append
#SBATCH --requeue
set -euo pipefail
trap '' USR2  # until the supervisor's handler is in (see slurm/train_standard.sh)
sweep_file=${1:?usage: sbatch --array=0-N slurm/train_sweep.sh SWEEP_FILE (use scripts/submit.py --sweep)}
cd "${SLURM_SUBMIT_DIR:-$PWD}"
python=${PYTHON:-python3}
mapfile -d '' task < <("$python" -m jobs.sweep "$sweep_file" "${SLURM_ARRAY_TASK_ID:?not a task of a job array}")
[ "${#task[@]}" -gt 0 ] || { echo "train_sweep.sh: no task ${SLURM_ARRAY_TASK_ID} in $sweep_file" >&2; exit 2; }
RUN_ID=${task[0]} exec slurm/exec_train.sh "${task[@]:1}"
