"""`python -m jobs.sweep SWEEP_FILE INDEX`: the run id and train.py flags of one task of a sweep, each followed
by a NUL (slurm/train_sweep.sh reads them with `mapfile -d ''`: no quoting, any character but NUL)."""
import sys
from pathlib import Path

from jobs.errors import UserError
from jobs.sweep.sweep_file import read, task_command


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m jobs.sweep SWEEP_FILE INDEX", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        command = task_command(read(path.parent.parent, path.stem), int(argv[1]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"{part}\0" for part in command))
    return 0


sys.exit(main(sys.argv[1:]))
