#!/bin/bash
# ResNet with bottleneck blocks (n=5: 47 layers) on CIFAR-10 for the paper's schedule, on one GPU.
# Submit from the repository root:   sbatch slurm/train_bottleneck.sh [train.py flags]
# Same behaviour and the same things to change for another cluster as slurm/train_standard.sh.
#SBATCH --job-name=resnet47-bottleneck
#SBATCH --time=02:00:00
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --output=checkpoints/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR2@180
##SBATCH --partition=gpu
##SBATCH --account=my-project

# A USR2 that comes while the job starts up (preemption sends it at once) would kill this shell, and a
# job killed by a signal before SLURM requeues it ends FAILED. Ignored until the supervisor and then the
# trainer install their handlers (the ignore survives exec); a preempted job still gets SIGTERM, on which
# the trainer saves.
trap '' USR2
exec slurm/exec_train.sh --block bottleneck --size 5 "$@"
