#!/usr/bin/env bash
# The whole test suite. As root on Debian it first installs and starts the two-node SLURM dev cluster
# (slurm/dev-cluster), and the SLURM end-to-end tests must then run; elsewhere they are skipped.
# Extra arguments go to pytest (e.g. `-m "not slurm"`, `-k resume`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  bash slurm/dev-cluster/install.sh
  eval "$(bash slurm/dev-cluster/start.sh)"
  export SLURM_TESTS_REQUIRED=1
fi
exec python -m pytest "$@"
