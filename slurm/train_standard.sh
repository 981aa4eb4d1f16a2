#!/bin/bash
# ResNet-32 (standard blocks, n=5) on CIFAR-10 for the paper's schedule (182 epochs), on one GPU.
# Submit from the repository root:   sbatch slurm/train_standard.sh [train.py flags, e.g. --epochs 90]
# The job requeues itself before each time limit and continues where it stopped, so the limit below
# is per job, not per run. Watch it with `python scripts/status.py`.
#
# For another cluster, change: --partition / --account (uncomment), the GPU request (--gres=gpu:1,
# or --gres=gpu:a100:1, or --gpus=1), --cpus-per-task and --mem. Data: DATA_DIR=/path/to/cifar-10-batches-py.
#SBATCH --job-name=resnet32-standard
#SBATCH --time=02:00:00
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --output=checkpoints/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
# USR2 to the batch shell 180 s before the limit (SLURM checks limits every 30 s, so 180-210 s):
# the trainer finishes its step, saves and requeues itself in a few seconds.
#SBATCH --signal=B:USR2@180
##SBATCH --partition=gpu
##SBATCH --account=my-project

# A USR2 that comes while the job starts up (preemption sends it at once) would kill this shell, and a
# job killed by a signal before SLURM requeues it ends FAILED. Ignored until the supervisor and then the
# trainer install their handlers (the ignore survives exec); a preempted job still gets SIGTERM, on which
# the trainer saves.
trap '' USR2
exec slurm/exec_train.sh --block standard --size 5 "$@"
