# The `slurm_env` fixture (session scope): a running dev cluster's environment.
from tests.slurm_cluster import slurm_env  # noqa: F401
