# The fixtures `reference` and `hermetic` (tests/helpers_runs.py), and `slurm_env` (session scope): a running dev
# cluster's environment (tests/slurm_cluster.py).
from tests.slurm_cluster import slurm_env  # noqa: F401

pytest_plugins = ["tests.helpers_runs"]
