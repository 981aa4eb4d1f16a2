#!/usr/bin/env bash
# Install the Debian packages for the one-node dev cluster (slurmctld, slurmd,
# client tools, munge, and accounting: slurmdbd with a MariaDB server). Idempotent:
# does nothing when the binaries are present.
# Needs root (CI and dev containers run as root). Note: `sbatch --version` is
# no check here: every client command needs a slurm.conf, even for --version.
set -euo pipefail

missing=()
for bin in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$bin")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "slurm dev cluster: packages already installed (slurm $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || echo ?))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: missing ${missing[*]}; run as root to install them" >&2
    exit 1
fi
echo "slurm dev cluster: installing (missing: ${missing[*]})"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server
echo "slurm dev cluster: installed slurm $(dpkg-query -W -f='${Version}' slurmctld)"
