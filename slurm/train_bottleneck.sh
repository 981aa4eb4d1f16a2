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

exec slurm/exec_train.sh --block bottleneck --size 5 "$@"
