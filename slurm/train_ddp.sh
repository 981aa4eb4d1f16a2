#!/bin/bash
# ResNet-32 (standard blocks, n=5) on CIFAR-10 trained by several processes, one task per GPU (DDP, NCCL).
# The global batch stays 128 (32 per GPU on 4 GPUs); each task takes its shard of the same permutation.
# Submit from the repository root, choosing the shape on the command line:
#   sbatch --nodes=1 --ntasks-per-node=4 --gres=gpu:4 slurm/train_ddp.sh            # one node, 4 GPUs
#   sbatch --nodes=2 --ntasks-per-node=4 --gres=gpu:4 slurm/train_ddp.sh            # two nodes, 8 GPUs
# A run keeps its number of tasks: resume it (this script requeues itself) with the same shape.
# For another cluster, change --partition / --account (uncomment), --cpus-per-task and --mem.
#SBATCH --job-name=resnet32-ddp
#SBATCH --time=02:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=4
#SBATCH --mem=64G
#SBATCH --output=checkpoints/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
# USR2 to every task (no B:) 180 s before the limit: each task's supervisor forwards it to its trainer, the
# trainers agree on the step to stop at, rank 0 saves once and requeues the job.
#SBATCH --signal=USR2@180
##SBATCH --partition=gpu
##SBATCH --account=my-project

trap '' USR2
exec slurm/exec_train.sh --block standard --size 5 "$@"
